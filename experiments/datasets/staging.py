"""A server-side waiting area for uploads between the validation report and the import.

Files a user sends are checked (`ingest.check_files`) and kept, zipped, under
`uploads/<user id>/<token>.zip` through `experiments.storage` (so S3 works too; the media view
never serves `uploads/` keys). The session remembers which tokens belong to which dataset; the
import re-reads and re-checks the stored files, so a report is never trusted blindly.
"""

import io
import secrets
import zipfile

from experiments import storage
from experiments.datasets import ingest
from experiments.errors import ServiceError

SESSION_KEY = "pending_uploads"
MAX_PENDING = 5


def _key(user_id: int, token: str) -> str:
    return f"uploads/{user_id}/{token}.zip"


def _pack(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()


def stage(request, dataset, files: dict[str, bytes], category: str) -> tuple[str, ingest.ImportReport]:
    """Check `files`, keep them, remember the token in the session; nothing enters the dataset."""
    report = ingest.check_files(files, category=category)
    if report.problems:  # nothing is kept for an upload that cannot be imported as it is
        raise ServiceError("Nothing was saved. Fix these and upload again: " + "; ".join(report.problems))
    token = secrets.token_urlsafe(16)
    pending = dict(request.session.get(SESSION_KEY, {}))
    for old in list(pending)[: max(0, len(pending) - MAX_PENDING + 1)]:
        discard(request, old)
        pending.pop(old, None)
    storage.save_bytes(_key(request.user.pk, token), _pack(files))
    pending[token] = {"dataset": dataset.pk, "category": category, "report": report.as_dict()}
    request.session[SESSION_KEY] = pending
    return token, report


def pending_for(request, dataset, token: str) -> dict | None:
    entry = request.session.get(SESSION_KEY, {}).get(token)
    if not entry or entry["dataset"] != dataset.pk:
        return None
    return entry


def recheck(request, token: str, category: str) -> ingest.ImportReport:
    key = _key(request.user.pk, token)
    if not storage.exists(key):
        raise ServiceError("The uploaded files are no longer here; upload them again.", status=404)
    return ingest.check_files(ingest.read_zip(storage.read_bytes(key)), category=category)


def discard(request, token: str) -> None:
    storage.delete_keys([_key(request.user.pk, token)])
    pending = dict(request.session.get(SESSION_KEY, {}))
    if pending.pop(token, None) is not None:
        request.session[SESSION_KEY] = pending
