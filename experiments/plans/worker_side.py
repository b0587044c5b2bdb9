"""The parts of a plan only the worker that runs it knows: its device and precision, the files it
loads copied to this machine, and a checkpoint's own input size (reading it imports torch)."""

from django.conf import settings

# per worker process: checkpoint metadata per file
_checkpoint_meta: dict[str, dict] = {}


def inference_device() -> str:
    from inference.runtime import select_device

    return str(select_device(settings.INFERENCE_DEVICE))


def onnx_device(device: str) -> str:
    """Where an ONNX model runs on this worker: `device` when onnxruntime has its CUDA provider, else the CPU."""
    from inference.detectors.onnx_model import onnx_device as runtime_device

    return runtime_device(device)


def expected_precision(learned: bool, device: str) -> str:
    """What a detector built with default runtime options computes in: mixed precision (bf16 where
    the GPU supports it, else fp16) for learned detectors on CUDA, fp32 otherwise."""
    if not learned or not str(device).startswith("cuda"):
        return "fp32"
    import torch

    from inference.runtime import RuntimeOptions, autocast_dtype

    chosen = torch.device(device)
    if not RuntimeOptions().amp_enabled(chosen):
        return "fp32"
    return "bf16" if autocast_dtype(chosen) == torch.bfloat16 else "fp16"


def checkpoint_weights(checkpoint):
    """What the worker loads for a platform checkpoint (`create_detector(weights=...)`): the local copy
    of a file our code wrote (trained, shipped), or for an uploaded one a `WeightsSource` of its
    safetensors copy under the provenance of the uploaded file, which is never unpickled here. An upload
    stored before uploads had that copy gets it now, made in the sandbox."""
    from experiments.checkpoints.local_copies import local_checkpoint_path, local_copy
    from experiments.models import ModelCheckpoint
    from inference.weights import SAFETENSORS_SUFFIX, WeightsSource

    if checkpoint.origin != ModelCheckpoint.Origin.UPLOADED:
        return local_checkpoint_path(checkpoint)
    if not checkpoint.tensors_key:
        from experiments.checkpoints.services import checkpoint_tensors_make

        checkpoint = checkpoint_tensors_make(checkpoint=checkpoint, path=local_checkpoint_path(checkpoint))
    path = local_copy(checkpoint.tensors_key, checkpoint.tensors_sha256, SAFETENSORS_SUFFIX)
    return WeightsSource("checkpoint", path, checkpoint.sha256)


def checkpoint_input_size(weights) -> int | None:
    """The input size a platform checkpoint was trained at (its `meta["input_size"]`), read once per file."""
    if weights.checkpoint is None or weights.load is None:
        return None
    sha256 = weights.checkpoint.sha256
    if sha256 not in _checkpoint_meta:
        from inference.weights import load_checkpoint

        _checkpoint_meta[sha256] = load_checkpoint(getattr(weights.load, "path", weights.load))[1]
    size = _checkpoint_meta[sha256].get("input_size")
    return int(size) if isinstance(size, int | float) and not isinstance(size, bool) and size >= 1 else None


def onnx_model_file(model):
    """An uploaded ONNX model as the worker loads it: a local copy of its file, checked against its
    sha256, with its contract (`OnnxModelFile`)."""
    from experiments.checkpoints.local_copies import local_checkpoint_path
    from experiments.onnx_models.selectors import contract_of
    from inference.detectors.onnx_model import OnnxModelFile

    path = local_checkpoint_path(model)  # the same local, hash-checked copy as a checkpoint's
    return OnnxModelFile(str(path), model.sha256, contract_of(model))


def prediction_source(predictions):
    """Uploaded maps standing in for a model (`experiments.predictions.source`)."""
    from experiments.predictions.source import PredictionSource

    return PredictionSource(predictions)
