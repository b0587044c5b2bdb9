"""What a run loads for a user's ONNX model: a local copy of its file (verified by sha256) and its contract."""

from experiments.checkpoints.weights import WeightsChoice, local_checkpoint_path
from experiments.detectors import ONNX_PREFIX
from experiments.models import UploadedModel
from experiments.onnx_models.selectors import contract_of, ready_model


def onnx_weights(owner, name: str) -> tuple[UploadedModel, WeightsChoice]:
    """`(model, WeightsChoice)` of the owner's ready model `onnx:<name>`: the weights are an
    `OnnxModelFile` (path, sha256, contract), the reference `onnx:<sha256>`; KeyError saying why
    when the model is not the owner's or not ready."""
    from inference.detectors.onnx_model import OnnxModelFile

    model = ready_model(owner, name.removeprefix(ONNX_PREFIX))
    path = local_checkpoint_path(model)  # the same local, hash-checked copy as a checkpoint's
    return model, WeightsChoice(OnnxModelFile(str(path), model.sha256, contract_of(model)), f"onnx:{model.sha256}")
