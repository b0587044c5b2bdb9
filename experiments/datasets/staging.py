"""A server-side waiting area for uploads between the validation report and the import.

An upload (one zip in any supported layout, or loose files packed into one) is checked
(`ingest.run_import`, nothing stored) and kept under `uploads/<user id>/<token>.zip` through
`experiments.storage` (so S3 works too; the media view never serves `uploads/` keys). The session
remembers which tokens belong to which dataset; the import re-reads and re-checks the stored
files pair by pair, so a report is never trusted blindly, and publishes its progress in the
cache for the page's progress bar.

A staged upload expires `STAGED_UPLOAD_TTL_S` after it was stored: it is removed when it is next
asked for, and by the sweep every worker runs (`expire_staged`, see `experiments.datasets.tasks`),
so uploads that are never confirmed or discarded do not stay in storage.
"""

import io
import logging
import secrets
import time
import zipfile
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage

from experiments import storage
from experiments.datasets import ingest
from experiments.errors import ServiceError
from experiments.quotas import quota_reserve

logger = logging.getLogger(__name__)

SESSION_KEY = "pending_uploads"
MAX_PENDING = 5
PROGRESS_SECONDS = 3600


def _key(user_id: int, token: str) -> str:
    return f"uploads/{user_id}/{token}.zip"


def pack(files: dict[str, bytes]) -> bytes:
    """Loose files as one zip, so every upload is staged and imported the same way."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()


def stage(request, dataset, archive: bytes, category: str) -> tuple[str, ingest.ImportReport]:
    """Check the zip `archive`, keep it, remember the token in the session; nothing enters the dataset."""
    report = ingest.run_import(ingest.zip_source(io.BytesIO(archive)), category=category, dataset=dataset)
    if not report.ok:  # nothing is kept for an upload that cannot be imported as it is
        problems = report.as_dict()["problems"] or ["no pairs found"]
        raise ServiceError("Nothing was saved. Fix these and upload again: " + "; ".join(problems))
    token = secrets.token_urlsafe(16)
    pending = dict(request.session.get(SESSION_KEY, {}))
    for old in list(pending)[: max(0, len(pending) - MAX_PENDING + 1)]:
        discard(request, old)
        pending.pop(old, None)
    with quota_reserve(user=request.user, adding=len(archive)):
        storage.save_bytes(_key(request.user.pk, token), archive)
    pending[token] = {"dataset": dataset.pk, "category": category, "report": report.as_dict()}
    request.session[SESSION_KEY] = pending
    return token, report


def pending_for(request, dataset, token: str) -> dict | None:
    """The session's entry for a staged upload still in storage; an expired one is removed."""
    entry = request.session.get(SESSION_KEY, {}).get(token)
    if not entry or entry["dataset"] != dataset.pk:
        return None
    if not _live(_key(request.user.pk, token)):
        discard(request, token)
        return None
    return entry


def import_staged(request, dataset, token: str, category: str) -> ingest.ImportReport:
    """Import a staged upload pair by pair (all or nothing), publishing progress for `progress_of`."""
    key = _key(request.user.pk, token)
    if not _live(key):
        raise ServiceError("The uploaded files are no longer here (staged uploads are kept for "
                           f"{settings.STAGED_UPLOAD_TTL_S // 3600 or 1} h); upload them again.", status=404)  # fmt: skip
    progress = _Progress(_progress_key(request.user.pk, token))
    try:
        with storage.open_file(key) as archive:  # read member by member, never whole
            source = ingest.zip_source(archive)
            report = ingest.run_import(source, category=category, dataset=dataset, store=True, progress=progress)
    except ServiceError:
        progress.finish("failed")
        raise
    if not report.ok:
        progress.finish("failed")
        raise ServiceError("Nothing was imported: " + "; ".join(report.as_dict()["problems"]))
    progress.finish("done")
    return ingest.audit_after_import(report, dataset)


def discard(request, token: str) -> None:
    storage.delete_keys([_key(request.user.pk, token)])
    pending = dict(request.session.get(SESSION_KEY, {}))
    if pending.pop(token, None) is not None:
        request.session[SESSION_KEY] = pending


# --------------------------------------------------------------------------- expiry
def _age_s(key: str) -> float:
    return (datetime.now(UTC) - default_storage.get_modified_time(key)).total_seconds()


def _live(key: str) -> bool:
    """Whether a staged upload is there and young enough; an expired one is removed now."""
    try:
        if _age_s(key) <= settings.STAGED_UPLOAD_TTL_S:
            return True
    except (FileNotFoundError, OSError):
        return False
    storage.delete_keys([key])
    return False


def expire_staged() -> int:
    """Remove every staged upload older than `STAGED_UPLOAD_TTL_S` (all users); how many went."""
    removed = 0
    for key in storage.list_all_keys("uploads"):
        try:
            expired = _age_s(key) > settings.STAGED_UPLOAD_TTL_S
        except (FileNotFoundError, OSError):  # removed meanwhile
            continue
        if expired:
            storage.delete_keys([key])
            removed += 1
    if removed:
        logger.info("removed %d expired staged upload(s)", removed)
    return removed


# --------------------------------------------------------------------------- progress
def _progress_key(user_id: int, token: str) -> str:
    return f"upload-progress:{user_id}:{token}"


def progress_of(user_id: int, token: str) -> dict:
    """`{"state": "waiting"|"importing"|"done"|"failed", "done": n, "total": n}` of one user's import."""
    return cache.get(_progress_key(user_id, token)) or {"state": "waiting", "done": 0, "total": 0}


class _Progress:
    """`progress(done, total)` for `run_import`, written to the cache at most a few times a second."""

    def __init__(self, key: str):
        self.key = key
        self.last = 0.0
        self.done = self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if done == 1 or done == total or now - self.last > 0.25:
            self.last = now
            cache.set(self.key, {"state": "importing", "done": done, "total": total}, PROGRESS_SECONDS)

    def finish(self, state: str) -> None:
        cache.set(self.key, {"state": state, "done": self.done, "total": self.total}, PROGRESS_SECONDS)
