"""A local copy of a checkpoint's (or an uploaded model's) file for workers, checked against its sha256."""

import hashlib
from pathlib import Path

from django.conf import settings

from experiments import storage
from experiments.errors import ServiceError


def local_checkpoint_path(checkpoint) -> Path:
    """The file of `checkpoint` (a `ModelCheckpoint` or an `UploadedModel`: `file_key`, `sha256`) on this
    machine, copied out of storage once and verified by sha256."""
    folder = Path(settings.VAR_DIR) / "checkpoint-cache"
    path = folder / f"{checkpoint.sha256}{Path(checkpoint.file_key).suffix or '.pt'}"
    if path.exists():
        return path
    data = storage.read_bytes(checkpoint.file_key)
    if hashlib.sha256(data).hexdigest() != checkpoint.sha256:
        raise ServiceError(f"Checkpoint {checkpoint.sha256[:12]} in storage does not match its hash.")
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path
