"""Local copies of model files (checkpoints, uploaded ONNX models) that workers load from disk.

Every worker process on a machine shares one folder, `<VAR_DIR>/checkpoint-cache/<sha256><suffix>`.
A copy is written under a name no other process uses, flushed to disk, checked (size and sha256)
and only then renamed into place, so two processes copying at once both end with a whole file
and a killed copy leaves only a temporary file (removed later). A file already there is trusted
only once its hash matched, checked once per process while its size and mtime stay the same; one
that does not match (truncated, corrupted) is fetched again.
"""

import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from django.conf import settings

from experiments import storage
from experiments.errors import ServiceError

logger = logging.getLogger(__name__)

FOLDER = "checkpoint-cache"
TEMP_SUFFIX = ".partial"
ABANDONED_AFTER_S = 3600  # a temporary file this old belongs to a copy whose process died
CHUNK = 1 << 20

_verified: dict[Path, tuple[int, int]] = {}  # path -> (mtime_ns, size) whose sha256 matched in this process
_lock = threading.Lock()


def local_copy(key: str, sha256: str, suffix: str, size: int | None = None) -> Path:
    """The path of a verified local copy of storage `key`, whose content must hash to `sha256`
    (and be `size` bytes when given); copied out of storage when missing or damaged."""
    folder = Path(settings.VAR_DIR) / FOLDER
    path = folder / f"{sha256}{suffix}"
    if _verified_file(path, sha256, size):
        return path
    data = storage.read_bytes(key)
    if hashlib.sha256(data).hexdigest() != sha256 or (size is not None and len(data) != size):
        raise ServiceError(f"Model file {sha256[:12]} in storage does not match its hash; upload it again.")
    folder.mkdir(parents=True, exist_ok=True)
    remove_abandoned(folder)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{sha256[:16]}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if os.path.getsize(temp) != len(data):
            raise OSError(f"the copy of {sha256[:12]} is {os.path.getsize(temp)} bytes, not {len(data)}")
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _remember(path)
    return path


def _verified_file(path: Path, sha256: str, size: int | None) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    seen = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        if _verified.get(path) == seen:
            return True
    if (size is not None and stat.st_size != size) or file_sha256(path) != sha256:
        logger.warning("the cached copy %s is damaged (size or sha256 differ); copying it again", path)
        return False
    with _lock:
        _verified[path] = seen
    return True


def _remember(path: Path) -> None:
    stat = path.stat()
    with _lock:
        _verified[path] = (stat.st_mtime_ns, stat.st_size)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_abandoned(folder: Path, older_than_s: float = ABANDONED_AFTER_S) -> list[Path]:
    """Delete temporary files left by copies whose process died (older than `older_than_s`)."""
    removed = []
    cutoff = time.time() - older_than_s
    for temp in folder.glob(f"*{TEMP_SUFFIX}"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
                removed.append(temp)
        except FileNotFoundError:
            continue
    return removed


def local_checkpoint_path(checkpoint) -> Path:
    """The file of `checkpoint` (a `ModelCheckpoint` or an `UploadedModel`: `file_key`, `sha256`) on this
    machine: a verified local copy."""
    suffix = Path(checkpoint.file_key).suffix or ".pt"
    return local_copy(checkpoint.file_key, checkpoint.sha256, suffix, getattr(checkpoint, "size_bytes", None))
