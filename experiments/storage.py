"""The one place that touches media storage (local disk or S3, per `STORAGES`).

Keys are relative paths whose first two parts name the owning object, so that the media view
can check permissions from the key alone: `datasets/<id>/...`, `runs/<id>/...`,
`checkpoints/<id>/...`.
"""

import contextlib
import json
import os
import threading
from functools import lru_cache

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse


def dataset_key(dataset_id: int, *parts: str) -> str:
    return "/".join(["datasets", str(dataset_id), *parts])


def run_key(run_id: int, *parts: str) -> str:
    return "/".join(["runs", str(run_id), *parts])


def checkpoint_key(checkpoint_ref: str, filename: str) -> str:
    return "/".join(["checkpoints", checkpoint_ref, filename])


def save_bytes(key: str, data: bytes) -> str:
    """Write `data` at exactly `key` (overwriting it), return the key. A reader, or a second writer
    of the same bytes at the same moment, never sees a partial file or a renamed copy: on local
    disk a temporary file is renamed over the key; object stores replace a key in one request."""
    if not is_local():
        stored = default_storage.save(key, ContentFile(data))  # file_overwrite: one PUT replaces the key
        if stored != key:  # a storage that renames would break ownership-by-key
            raise RuntimeError(f"storage stored {key!r} as {stored!r}")
        return key
    path = local_path(key)
    # A name no other thread or process writes at the same moment (tempfile's random names cost more
    # than the write itself, a run writes two files per result).
    partial = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        handle = os.open(partial, flags, 0o600)
    except FileNotFoundError:  # the key's folder is new
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = os.open(partial, flags, 0o600)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            os.fchmod(stream.fileno(), settings.FILE_UPLOAD_PERMISSIONS or 0o644)  # as the storage writes: nginx reads
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return key


def read_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()


def open_file(key: str):
    """The stored file, open for reading (seekable); use it in a `with` block."""
    return default_storage.open(key, "rb")


def exists(key: str) -> bool:
    return default_storage.exists(key)


def delete_keys(keys) -> None:
    for key in keys:
        if key and default_storage.exists(key):
            default_storage.delete(key)


def delete_prefix(prefix: str) -> None:
    """Delete every file under `prefix` (a folder key)."""
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return
    for name in files:
        default_storage.delete(f"{prefix}/{name}")
    for folder in folders:
        delete_prefix(f"{prefix}/{folder}")


def list_all_keys(prefix: str = "") -> list[str]:
    """Every file key under `prefix` (tests use it to prove nothing was left behind)."""
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return []
    base = f"{prefix}/" if prefix else ""
    keys = [base + name for name in files]
    for folder in folders:
        keys.extend(list_all_keys(base + folder))
    return keys


def is_local() -> bool:
    return settings.STORAGES["default"]["BACKEND"].endswith("FileSystemStorage")


def local_path(key: str):
    return default_storage.path(key)


def presigned_url(key: str) -> str:
    """A short-lived URL for `key`, signed for `AWS_S3_PUBLIC_URL` (where browsers reach the store)
    when that is set, else for the endpoint the server uses."""
    public_url = settings.AWS_S3_PUBLIC_URL
    if not public_url:
        return default_storage.url(key)
    return _public_signer(public_url, json.dumps(settings.STORAGES["default"]["OPTIONS"], sort_keys=True)).url(key)


@lru_cache(maxsize=4)
def _public_signer(public_url: str, options_json: str):
    # Signing is local (no request is made), so a storage pointed at the public address only signs.
    from storages.backends.s3 import S3Storage

    return S3Storage(**{**json.loads(options_json), "endpoint_url": public_url})


def media_url(key: str) -> str:
    """The URL a client should use; always goes through the permission-checked view."""
    return reverse("experiments:media", kwargs={"key": key}) if key else ""
