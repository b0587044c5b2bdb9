"""Writes of model checkpoints: a file in storage and its row, both or neither."""

import hashlib
import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from experiments import storage
from experiments.checkpoints.selectors import checkpoints_visible_to
from experiments.errors import InvalidState, ServiceError
from experiments.models import ACTIVE_RUN_STATES, ModelCheckpoint, Run
from experiments.quotas import quota_reserve
from inference.catalogue import catalogue_entry

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
logger = logging.getLogger(__name__)


def checkpoint_register(*, owner, detector: str, dataset, data: bytes, sha256: str, epochs: int,
                        val_metrics: dict, config: dict, suffix: str = ".pt", is_public: bool = False,
                        origin: str = ModelCheckpoint.Origin.TRAINED, tensors: bytes | None = None):  # fmt: skip
    """Store a checkpoint file and its row (or return the existing row for the same bytes). `origin`
    says who wrote the file (our training by default); an uploaded one comes with `tensors`, its
    safetensors copy written by the sandbox that checked it, stored beside it."""
    existing = ModelCheckpoint.objects.filter(sha256=sha256, owner=owner).first()
    if existing is not None:
        return existing
    key = storage.checkpoint_key(sha256[:16], f"{detector}{suffix}")
    tensors_key = storage.checkpoint_key(sha256[:16], f"{detector}.tensors.safetensors") if tensors else ""
    storage.save_bytes(key, data)
    try:
        if tensors:
            storage.save_bytes(tensors_key, tensors)
        with transaction.atomic():
            return ModelCheckpoint.objects.create(
                owner=owner, detector=detector, dataset=dataset, file_key=key, sha256=sha256, epochs=epochs,
                val_metrics=val_metrics, config=config, is_public=is_public, origin=origin, tensors_key=tensors_key,
                tensors_sha256=hashlib.sha256(tensors).hexdigest() if tensors else "",
            )  # fmt: skip
    except BaseException:
        storage.delete_keys([key, tensors_key] if tensors_key else [key])
        raise


# --------------------------------------------------------------------------- uploads
def checkpoint_upload(*, owner, filename: str, data: bytes, detector: str | None = None, dataset=None):
    """Check an uploaded checkpoint file and register it: `(checkpoint, created)`.

    Nothing is decompressed or unpickled in this process: the zip's central directory is read here
    (members stored uncompressed, a capped total), then the file is loaded with
    `torch.load(weights_only=True)` (or safetensors) in a sandbox child with limited memory and time
    (`inference.checkpoint_checks`), so a pickle of arbitrary objects is refused (422) before anything
    runs. Its `meta["detector"]` must name a learned detector (and `detector`, when given) whose network
    its tensors fit, key for key and shape for shape. Bytes the user uploaded before give their
    existing checkpoint back (`created` False); bytes registered by another user are refused (409).
    """
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ServiceError("Upload a .pt or .safetensors checkpoint file.", field="file")
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as folder:
        tensors_path = Path(folder) / "tensors.safetensors"
        checked = _check_checkpoint(data, suffix, tensors_path)
        tensors = tensors_path.read_bytes() if tensors_path.is_file() else None
    meta, sha256 = checked["meta"], checked["sha256"]
    detector = _checkpoint_detector(meta, detector)
    if checked["problems"]:
        raise ServiceError(
            f"The state_dict does not fit {detector}: {'; '.join(checked['problems'])}.", status=422, field="file"
        )
    if ModelCheckpoint.objects.filter(sha256=sha256).exists():  # the same bytes, registered before
        existing = checkpoints_visible_to(owner).filter(sha256=sha256).first()
        if existing is None:
            raise ServiceError("These exact weights are already registered by another user.", status=409)
        return existing, False
    if tensors is None or hashlib.sha256(tensors).hexdigest() != checked.get("tensors_sha256"):
        raise ServiceError("The checkpoint could not be converted for runs; upload it again in a minute.", status=503)
    with quota_reserve(user=owner, adding=len(data) + len(tensors)):
        checkpoint = checkpoint_register(
            owner=owner,
            detector=detector,
            dataset=dataset,
            data=data,
            sha256=sha256,
            epochs=_int(meta.get("epochs")),
            val_metrics=_dict(meta.get("val_metrics")),
            config=meta,
            suffix=".safetensors" if suffix == ".safetensors" else ".pt",
            origin=ModelCheckpoint.Origin.UPLOADED,
            tensors=tensors,
        )
    return checkpoint, True


def checkpoint_tensors_make(*, checkpoint: ModelCheckpoint, path: Path) -> ModelCheckpoint:
    """The safetensors copy of an uploaded checkpoint stored before uploads had one, made from its
    local file `path` in the sandbox (as at upload) on its first use; `ServiceError` saying why not."""
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as folder:
        tensors_path = Path(folder) / "tensors.safetensors"
        suffix = path.suffix if path.suffix in CHECKPOINT_SUFFIXES else ".pt"
        checked = _check_checkpoint(path.read_bytes(), suffix, tensors_path)
        if checked["problems"] or not tensors_path.is_file():
            problems = "; ".join(checked["problems"] or ["it names no detector it fits"])
            raise ServiceError(f"Checkpoint {checkpoint.sha256[:12]} cannot be used: {problems}. Upload it again.")
        tensors = tensors_path.read_bytes()
    key = storage.checkpoint_key(checkpoint.sha256[:16], f"{checkpoint.detector}.tensors.safetensors")
    storage.save_bytes(key, tensors)
    ModelCheckpoint.objects.filter(pk=checkpoint.pk).update(tensors_key=key, tensors_sha256=checked["tensors_sha256"])
    checkpoint.refresh_from_db()
    return checkpoint


def _int(value) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _check_checkpoint(content: bytes, suffix: str, tensors_path: Path) -> dict:
    """{meta, sha256, problems, tensors_sha256} of a checkpoint's bytes (`check_checkpoint`, its safetensors
    copy written to `tensors_path` when it fits); 422 for anything it refuses."""
    from inference.checkpoint_checks import CheckpointRefused, check_checkpoint
    from inference.sandbox import SandboxUnavailable

    try:
        return check_checkpoint(
            content,
            suffix,
            memory_mb=settings.SANDBOX_MEMORY_MB,
            seconds=settings.CHECKPOINT_CHECK_SECONDS,
            max_total_bytes=settings.CHECKPOINT_MAX_MB * 1024 * 1024,
            tensors_path=str(tensors_path),
        )
    except CheckpointRefused as exc:
        raise ServiceError(f"This file cannot be used as a checkpoint: {exc}", status=422, field="file") from None
    except SandboxUnavailable:
        logger.warning("the checkpoint check could not start", exc_info=True)
        raise ServiceError(
            "The checkpoint could not be checked now; upload it again in a minute.", status=503
        ) from None


def _checkpoint_detector(meta: dict, given: str | None) -> str:
    saved_for = meta.get("detector")
    if not isinstance(saved_for, str) or not saved_for:
        raise ServiceError(
            "The checkpoint's meta does not name its detector (meta['detector']).", status=422, field="file"
        )
    if given and given != saved_for:
        raise ServiceError(f"The checkpoint was saved for {saved_for!r}, not {given!r}.", status=422, field="detector")
    try:
        entry = catalogue_entry(saved_for)
    except KeyError as exc:
        raise ServiceError(str(exc.args[0]), status=422, field="detector") from None
    if not entry.learned:
        raise ServiceError(f"{saved_for} is not a learned detector; it takes no weights.", status=422, field="detector")
    return saved_for


# --------------------------------------------------------------------------- delete
def checkpoint_delete(*, checkpoint: ModelCheckpoint) -> None:
    """Delete the row and its file; refused while a queued or running run uses these weights.
    Finished results keep naming `checkpoint:<sha256>`; training jobs that made it lose the link."""
    active = Run.objects.filter(state__in=ACTIVE_RUN_STATES).select_related("experiment")
    if any(checkpoint.provenance in run.experiment.detector_weights.values() for run in active):
        raise InvalidState("A queued or running run uses this checkpoint; wait for it or cancel it.")
    keys = [key for key in (checkpoint.file_key, checkpoint.tensors_key) if key]
    with transaction.atomic():
        checkpoint.delete()
        # the same bytes of another owner share the files
        shared = ModelCheckpoint.objects.filter(Q(file_key__in=keys) | Q(tensors_key__in=keys)).exists()
        transaction.on_commit(lambda: None if shared else storage.delete_keys(keys))
