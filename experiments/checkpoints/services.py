"""Writes of model checkpoints: a file in storage and its row, both or neither."""

import logging

from django.conf import settings
from django.db import transaction

from experiments import storage
from experiments.checkpoints.selectors import checkpoints_visible_to
from experiments.errors import InvalidState, ServiceError
from experiments.models import ACTIVE_RUN_STATES, ModelCheckpoint, Run
from experiments.quotas import quota_reserve
from inference.catalogue import catalogue_entry

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
logger = logging.getLogger(__name__)


def checkpoint_register(*, owner, detector: str, dataset, data: bytes, sha256: str, epochs: int,
                        val_metrics: dict, config: dict, suffix: str = ".pt", is_public: bool = False):  # fmt: skip
    """Store a checkpoint file and its row (or return the existing row for the same bytes)."""
    existing = ModelCheckpoint.objects.filter(sha256=sha256, owner=owner).first()
    if existing is not None:
        return existing
    key = storage.checkpoint_key(sha256[:16], f"{detector}{suffix}")
    storage.save_bytes(key, data)
    try:
        with transaction.atomic():
            return ModelCheckpoint.objects.create(
                owner=owner, detector=detector, dataset=dataset, file_key=key, sha256=sha256, epochs=epochs,
                val_metrics=val_metrics, config=config, is_public=is_public,
            )  # fmt: skip
    except BaseException:
        storage.delete_keys([key])
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
    checked = _check_checkpoint(data, suffix)
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
    with quota_reserve(user=owner, adding=len(data)):
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
        )
    return checkpoint, True


def _int(value) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _check_checkpoint(content: bytes, suffix: str) -> dict:
    """{meta, sha256, problems} of a checkpoint's bytes (`check_checkpoint`); 422 for anything it refuses."""
    from inference.checkpoint_checks import CheckpointRefused, check_checkpoint
    from inference.sandbox import SandboxUnavailable

    try:
        return check_checkpoint(
            content,
            suffix,
            memory_mb=settings.SANDBOX_MEMORY_MB,
            seconds=settings.CHECKPOINT_CHECK_SECONDS,
            max_total_bytes=settings.CHECKPOINT_MAX_MB * 1024 * 1024,
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
    key = checkpoint.file_key
    with transaction.atomic():
        checkpoint.delete()
        shared = ModelCheckpoint.objects.filter(file_key=key).exists()  # the same bytes of another owner
        transaction.on_commit(lambda: None if shared else storage.delete_keys([key]))
