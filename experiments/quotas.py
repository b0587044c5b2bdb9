"""Per-user storage quota (`USER_STORAGE_QUOTA_MB`, 0 = none): what a user's files take, and the
refusal (413) of an upload that would take more than the quota.

Counted: the images of the user's datasets (A and B as stored, batch jobs' hidden datasets
included), their prediction sets, uploaded ONNX models, checkpoints (with an upload's safetensors copy) and staged uploads. Staff
are exempt while `QUOTA_EXEMPT_STAFF` is on. Run results are not counted: they are derived, and
deleting the run frees them.

Checking and taking are one step (`QuotaReservation`): an upload first adds its bytes to the user's
reserved total (an atomic counter in Redis, shared by every process), then reads what is stored, and
is refused when both together pass the quota; it keeps its reservation until its rows are committed.
Of two uploads at the same moment, the later reservation sees the earlier one, so both cannot pass.
An import reserves pair by pair and reads what is stored again only when another upload of the user
has released its reservation (committed) since: a release counter is read with each reservation.
With Redis down the counters are kept in the process (uploads in one process still exclude each other).
"""

import logging
import threading

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db.models import F, Sum
from redis.exceptions import RedisError

from experiments import storage
from experiments.errors import ServiceError
from experiments.models import ImagePair, ModelCheckpoint, PredictionSet, UploadedModel

logger = logging.getLogger(__name__)
MB = 1024 * 1024
RESERVATION_TTL_S = 6 * 3600  # a reservation its process never released (killed) lapses then


class QuotaExceeded(ServiceError):
    def __init__(self, message: str):
        super().__init__(message, status=413)


def limit_bytes(user) -> int | None:
    """The user's quota in bytes, or None when no quota applies."""
    if not settings.USER_STORAGE_QUOTA_MB or (user.is_staff and settings.QUOTA_EXEMPT_STAFF):
        return None
    return settings.USER_STORAGE_QUOTA_MB * MB


def storage_used(user) -> int:
    """Bytes the user's files take now (see the module's docstring for what counts)."""
    pairs = ImagePair.objects.filter(dataset__owner=user).aggregate(total=Sum(F("a_bytes") + F("b_bytes")))["total"]
    models = UploadedModel.objects.filter(owner=user).aggregate(total=Sum("size_bytes"))["total"]
    predictions = PredictionSet.objects.filter(owner=user).aggregate(total=Sum("size_bytes"))["total"]
    return (pairs or 0) + (models or 0) + (predictions or 0) + _file_sizes(
        [*ModelCheckpoint.objects.filter(owner=user).values_list("file_key", flat=True),
         *ModelCheckpoint.objects.filter(owner=user).exclude(tensors_key="").values_list("tensors_key", flat=True),
         *storage.list_all_keys(f"uploads/{user.pk}")]
    )  # fmt: skip


def _file_sizes(keys) -> int:
    total = 0
    for key in keys:
        try:
            total += default_storage.size(key)
        except (FileNotFoundError, OSError):
            continue
    return total


def quota_check(*, user, adding: int, used: int | None = None) -> int:
    """Refuse (413) when `adding` more bytes would take the user over the quota; the bytes used now."""
    limit = limit_bytes(user)
    if limit is None:
        return 0
    used = storage_used(user) if used is None else used
    if used + adding > limit:
        raise _refusal(adding, used, limit)
    return used


def _refusal(adding: int, used: int, limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"This upload needs {adding / MB:.1f} MB, and your files already use {used / MB:.1f} MB of your "
        f"{limit // MB} MB storage quota. Delete datasets, prediction sets, ONNX models or checkpoints you no "
        "longer need (each one's page has Delete), then upload again."
    )


class QuotaReservation:
    """Bytes of a user's quota held by one upload until `release()` (after its rows commit).

    `take(n)` reserves n more bytes or raises `QuotaExceeded` (holding nothing more); `release()` may
    be called more than once."""

    def __init__(self, user):
        self.user, self.limit = user, limit_bytes(user)
        self.holds: list[tuple[int, bool]] = []  # (bytes, kept in this process)
        self.used: int | None = None  # what is stored, read after a reservation...
        self.releases = -1  # ...when the user's uploads had released this many times

    @property
    def held(self) -> int:
        return sum(amount for amount, _ in self.holds)

    def take(self, adding: int) -> None:
        if self.limit is None or adding <= 0:
            return
        reserved, releases, local = _counter_add(self.user.pk, adding)  # every upload's reservations, ours too
        if self.used is None or releases != self.releases:  # another upload committed since we read
            self.used, self.releases = storage_used(self.user), releases
        if self.used + reserved > self.limit:
            _counter_add(self.user.pk, -adding, local=local)
            others = max(0, reserved - adding - self.held)  # other uploads in progress
            raise _refusal(self.held + adding, self.used + others, self.limit)
        self.holds.append((adding, local))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()

    def release(self) -> None:
        """Give the bytes back; called once the rows written count in `storage_used` (the upload
        services commit their own short transaction before they return) or nothing was kept."""
        holds, self.holds = self.holds, []
        for amount, local in holds:
            _counter_add(self.user.pk, -amount, local=local, release=True)


def quota_reserve(*, user, adding: int) -> QuotaReservation:
    """Check and hold `adding` bytes for one upload (413 when they do not fit); release it once stored."""
    reservation = QuotaReservation(user)
    reservation.take(adding)
    return reservation


_local = {"lock": threading.Lock(), "reserved": {}, "releases": {}}


def _counter_add(user_id: int, amount: int, *, local: bool = False, release: bool = False) -> tuple[int, int, bool]:
    """Add `amount` to the user's reserved bytes (and count a release): the new total, the number of
    releases so far, and whether they are kept in this process."""
    if not local:
        key = cache.make_and_validate_key(f"quota_reserved_{user_id}")
        releases_key = cache.make_and_validate_key(f"quota_releases_{user_id}")
        try:
            client = cache._cache.get_client(key, write=True)
            with client.pipeline() as pipe:  # MULTI/EXEC: one atomic step
                pipe.incrby(key, amount).expire(key, RESERVATION_TTL_S)
                pipe.incrby(releases_key, int(release)).expire(releases_key, RESERVATION_TTL_S)
                total, _, releases, _ = pipe.execute()
            return int(total), int(releases), False
        except (RedisError, OSError):
            logger.warning("Redis unavailable: the quota reservation of user %s is kept in this process", user_id)
    with _local["lock"]:
        total = max(0, _local["reserved"].get(user_id, 0) + amount)
        _local["reserved"][user_id] = total
        releases = _local["releases"][user_id] = _local["releases"].get(user_id, 0) + int(release)
        return total, releases, True
