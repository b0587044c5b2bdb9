"""Writes of uploaded ONNX models: upload (file and row, both or neither, validation queued on
commit), the worker's verdict, delete (row and file).

A refusal at upload time (a bad field, bytes that are not an ONNX protobuf, a file over the size
limit, a name already used) leaves nothing: no row, no file, no queued task. A model the worker
rejects keeps its row, so its owner can read the reason, but its file is deleted at once; deleting
the row (any state) removes the file too.
"""

import hashlib
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments import outbox, storage
from experiments.errors import ServiceError
from experiments.models import UploadedModel
from experiments.onnx_models.selectors import contract_of, models_of
from experiments.quotas import quota_reserve

logger = logging.getLogger(__name__)

NAME_MAX = UploadedModel._meta.get_field("name").max_length
NAME_CHARACTERS = "letters, digits, '.', '_' and '-'"
INPUT_SIZE_RANGE = (16, 4096)


def max_model_bytes() -> int:
    return settings.ONNX_MAX_MB * 1024 * 1024


def model_key(model_id: int) -> str:
    """`models/<id>/model.onnx`: the key names the row that owns it (the media view serves none of these)."""
    return "/".join(["models", str(model_id), "model.onnx"])


# --------------------------------------------------------------------------- the contract's fields
def _name(value) -> str:
    name = str(value or "").strip()
    if not name:
        raise ServiceError("Give the model a name (it becomes detector onnx:<name>).", field="name")
    if len(name) > NAME_MAX or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in name):
        raise ServiceError(f"A model name is 1 to {NAME_MAX} characters: {NAME_CHARACTERS}.", field="name")
    return name


def _input_size(value) -> int | None:
    text = str(value if value is not None else "").strip().lower()
    if text == "":
        raise ServiceError(
            "input_size is required: the square size in pixels the model was exported at, or 'any' for a "
            "fully convolutional model run at B's size.",
            field="input_size",
        )
    if text == "any":
        return None
    low, high = INPUT_SIZE_RANGE
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not low <= size <= high:
        raise ServiceError(
            f"input_size is a whole number of pixels from {low} to {high}, or 'any'.", field="input_size"
        )
    return size


def _triple(value, field: str, *, positive: bool) -> list[float]:
    parts = value if isinstance(value, list | tuple) else str(value or "").split(",")
    try:
        numbers = [float(str(part).strip()) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 3 or not all(abs(n) < 1e6 and n == n for n in numbers) or (positive and min(numbers) <= 0):
        rule = "three positive numbers" if positive else "three numbers"
        raise ServiceError(
            f"{field} is {rule} separated by commas, one per RGB channel scaled to [0, 1] "
            f"(ImageNet: {'0.229,0.224,0.225' if positive else '0.485,0.456,0.406'}).",
            field=field,
        )
    return numbers


def _choice(value, field: str, choices) -> str:
    text = str(value or "").strip().lower()
    if text not in choices.values:
        raise ServiceError(f"{field} is one of {', '.join(choices.values)}.", field=field)
    return text


# --------------------------------------------------------------------------- upload
def model_upload(*, owner, data: bytes, name, input_size, mean, std, inputs, output) -> UploadedModel:
    """Check the contract's fields and the bytes, store the file and its row (both or neither) and
    queue the validation once they are committed. The model starts `validating`."""
    from inference.onnx_checks import OnnxRejected, check_onnx_upload  # onnx in a sandbox child only
    from inference.sandbox import SandboxUnavailable

    fields = {
        "name": _name(name),
        "input_size": _input_size(input_size),
        "mean": _triple(mean, "mean", positive=False),
        "std": _triple(std, "std", positive=True),
        "inputs": _choice(inputs, "inputs", UploadedModel.Inputs),
        "output": _choice(output, "output", UploadedModel.Output),
    }
    if len(data) > max_model_bytes():
        raise ServiceError(
            f"The model is {len(data) / 2**20:.1f} MB; ONNX files up to {settings.ONNX_MAX_MB} MB are accepted.",
            status=413,
            field="file",
        )
    try:
        check_onnx_upload(data, memory_mb=settings.SANDBOX_MEMORY_MB)
    except OnnxRejected as exc:
        raise ServiceError(str(exc), status=422, field="file") from None
    except SandboxUnavailable:
        logger.warning("the ONNX upload check could not start", exc_info=True)
        raise ServiceError("The model could not be checked now; upload it again in a minute.", status=503) from None
    if models_of(owner).filter(name=fields["name"]).exists():
        raise _name_taken(fields["name"])
    with quota_reserve(user=owner, adding=len(data)):
        return _store(owner, data, fields)


def _name_taken(name: str) -> ServiceError:
    return ServiceError(
        f"You already have a model called {name!r}; choose another name or delete that one first.",
        status=409,
        field="name",
    )


def _store(owner, data: bytes, fields: dict) -> UploadedModel:
    key = None
    try:
        with transaction.atomic():
            model = UploadedModel.objects.create(
                owner=owner, file_key="", sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), **fields
            )
            key = storage.save_bytes(model_key(model.pk), data)
            model.file_key = key
            model.save(update_fields=["file_key"])
            transaction.on_commit(lambda: outbox.send_model_validation(model.pk))
    except IntegrityError:
        storage.delete_keys([key])
        raise _name_taken(fields["name"]) from None
    except BaseException:
        storage.delete_keys([key])
        raise
    return model


# --------------------------------------------------------------------------- the worker's verdict
def model_validate(*, model_id: int) -> UploadedModel | None:
    """Run every check on the stored file (`inference.onnx_checks.validate_onnx`) and record the
    verdict: `ready` with what the probe measured, or `rejected` with the reason (and the file
    deleted). A model that is gone or already decided is left as it is."""
    from inference.onnx_checks import OnnxRejected, validate_onnx

    model = UploadedModel.objects.filter(pk=model_id).first()
    if model is None or model.state != UploadedModel.State.VALIDATING:
        return model
    try:
        data = storage.read_bytes(model.file_key)
    except FileNotFoundError:
        return _record_verdict(
            model, UploadedModel.State.REJECTED, reason="the uploaded file is missing; upload it again."
        )
    try:
        if hashlib.sha256(data).hexdigest() != model.sha256:
            raise OnnxRejected("the stored file does not match the uploaded one (sha256 differs); upload it again.")
        probe = validate_onnx(
            data,
            contract_of(model),
            time_limit_s=settings.ONNX_PROBE_SECONDS,
            memory_mb=settings.SANDBOX_MEMORY_MB,
            any_size=settings.ONNX_PROBE_ANY_SIZE,
        )
    except OnnxRejected as exc:
        return _record_verdict(model, UploadedModel.State.REJECTED, reason=str(exc))
    except Exception as exc:
        logger.warning("validating uploaded model %s failed", model_id, exc_info=True)
        reason = f"validation failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
        return _record_verdict(model, UploadedModel.State.REJECTED, reason=reason)
    return _record_verdict(model, UploadedModel.State.READY, probe=probe)


def model_give_up(*, model_id: int, reason: str) -> UploadedModel | None:
    """Reject a model still `validating` without checking it again (its checks kept killing workers)."""
    model = UploadedModel.objects.filter(pk=model_id).first()
    if model is None or model.state != UploadedModel.State.VALIDATING:
        return model
    return _record_verdict(model, UploadedModel.State.REJECTED, reason=reason)


def _record_verdict(model: UploadedModel, state: str, *, reason: str = "", probe: dict | None = None):
    with transaction.atomic():
        updated = UploadedModel.objects.filter(pk=model.pk, state=UploadedModel.State.VALIDATING).update(
            state=state, reason=reason, probe=probe or {}, validated_at=timezone.now()
        )
    if updated and state == UploadedModel.State.REJECTED:
        storage.delete_keys([model.file_key])  # a rejected model is never run: keep only its reason
    return UploadedModel.objects.filter(pk=model.pk).first()  # None: deleted while it was being validated


# --------------------------------------------------------------------------- delete
def model_delete(*, model: UploadedModel) -> None:
    """Delete the row and its file. Results already computed with it stay in their runs (they name
    `onnx:<name>` and its sha256); new experiments can no longer choose it."""
    key = model.file_key
    with transaction.atomic():
        model.delete()
    storage.delete_keys([key])
