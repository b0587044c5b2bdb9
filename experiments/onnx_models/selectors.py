"""Reads of uploaded ONNX models: the owner's, and the ready ones (detectors in `experiments.plans`)."""

from experiments.models import UploadedModel


def models_of(owner):
    if not getattr(owner, "is_authenticated", False):
        return UploadedModel.objects.none()
    return UploadedModel.objects.filter(owner=owner)


def models_visible_to(user):
    """For pages and the API: the user's own models; staff see every user's (experiments.visibility)."""
    from experiments.visibility import owned_by

    return owned_by(UploadedModel.objects.all(), user, "owner")


def ready_model(owner, name: str) -> UploadedModel:
    """The owner's ready model called `name`; KeyError saying why when there is none."""
    model = models_of(owner).filter(name=name).first()
    if model is None:
        raise KeyError(f"unknown detector 'onnx:{name}': you have no uploaded model called {name!r}")
    if model.state != UploadedModel.State.READY:
        why = f": {model.reason}" if model.reason else ""
        raise KeyError(f"model 'onnx:{name}' is {model.state}, not ready{why}")
    return model


def ready_models(owner):
    """The owner's validated models, by name: each a detector (`onnx:<name>`) in the owner's plans."""
    return models_of(owner).filter(state=UploadedModel.State.READY).order_by("name")


def contract_of(model: UploadedModel):
    """The model's contract as the inference library takes it (`OnnxContract`)."""
    from inference.detectors.onnx_model import OnnxContract  # numpy/OpenCV only: no torch, no onnxruntime

    return OnnxContract(
        input_size=model.input_size,
        mean=tuple(model.mean),
        std=tuple(model.std),
        inputs=model.inputs,
        output=model.output,
    )
