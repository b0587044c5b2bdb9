"""Per-user storage quota (`USER_STORAGE_QUOTA_MB`, 0 = none): what a user's files take, and the
refusal (413) of an upload that would take more than the quota.

Counted: the images of the user's datasets (A and B as stored, batch jobs' hidden datasets
included), their prediction sets, uploaded ONNX models, checkpoints (with an upload's safetensors copy) and staged uploads. Staff
are exempt while `QUOTA_EXEMPT_STAFF` is on. Run results are not counted: they are derived, and
deleting the run frees them.
"""

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import F, Sum

from experiments import storage
from experiments.errors import ServiceError
from experiments.models import ImagePair, ModelCheckpoint, PredictionSet, UploadedModel

MB = 1024 * 1024


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
        raise QuotaExceeded(
            f"This upload needs {adding / MB:.1f} MB, and your files already use {used / MB:.1f} MB of your "
            f"{limit // MB} MB storage quota. Delete datasets, prediction sets, ONNX models or checkpoints you no "
            "longer need (each one's page has Delete), then upload again."
        )
    return used
