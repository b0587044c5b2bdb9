"""Writes of model checkpoints: a file in storage and its row, both or neither."""

from django.db import transaction

from experiments import storage
from experiments.checkpoints.selectors import checkpoints_visible_to
from experiments.errors import InvalidState, ServiceError
from experiments.models import ACTIVE_RUN_STATES, ModelCheckpoint, Run
from experiments.quotas import quota_check
from inference.catalogue import catalogue_entry

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


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

    The file is read with `torch.load(weights_only=True)` (or safetensors), so a pickle of
    arbitrary objects is refused (422) before anything runs; its `meta["detector"]` must name a
    learned detector (and `detector`, when given). Bytes the user uploaded before give their
    existing checkpoint back (`created` False); bytes registered by another user are refused (409).
    """
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ServiceError("Upload a .pt or .safetensors checkpoint file.", field="file")
    meta, sha256 = _read_checkpoint(data, suffix)
    detector = _checkpoint_detector(meta, detector)
    if ModelCheckpoint.objects.filter(sha256=sha256).exists():  # the same bytes, registered before
        existing = checkpoints_visible_to(owner).filter(sha256=sha256).first()
        if existing is None:
            raise ServiceError("These exact weights are already registered by another user.", status=409)
        return existing, False
    quota_check(user=owner, adding=len(data))
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


def _read_checkpoint(content: bytes, suffix: str) -> tuple[dict, str]:
    """(meta, sha256) of a checkpoint's bytes; 422 for anything `load_checkpoint` refuses."""
    import tempfile
    from pathlib import Path

    from inference.weights import WeightsError, load_checkpoint  # torch: only here, the web tier imports this module

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            _, meta, sha256 = load_checkpoint(path)
        except WeightsError as exc:
            message = str(exc).replace(str(path), "the file")
            raise ServiceError(
                f"This file cannot be used as a checkpoint: {message}. Only plain tensor checkpoints "
                "(torch.save of {'state_dict', 'meta'} or .safetensors) are accepted.",
                status=422,
                field="file",
            ) from None
    return meta, sha256


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
