"""How a detector is set up in a run: weights and input size (override, checkpoint, registry), the
ensemble's members, device and precision, and the records of each that go into the cache key."""

import logging
from dataclasses import dataclass

from django.conf import settings

from experiments.checkpoints import weights as checkpoints
from experiments.detectors import detector_entry
from experiments.models import PairAlignment
from inference.catalogue import catalogue_entry

logger = logging.getLogger(__name__)

# per worker process: FLOP counts per (detector, input size), checkpoint metadata per file
_flop_counts: dict[tuple[str, int | None], int | None] = {}
_checkpoint_meta: dict[str, dict] = {}


def inference_device() -> str:
    from inference.runtime import select_device

    return str(select_device(settings.INFERENCE_DEVICE))


def flops_of(detector, input_size: int | None) -> int | None:
    """FLOPs of one forward at the detector's input size (learned detectors only; counted once per process)."""
    if getattr(detector, "model", None) is None or input_size is None:
        return None
    key = (detector.info.name, input_size)
    if key not in _flop_counts:
        from inference.profiling import count_flops

        try:
            _flop_counts[key] = count_flops(detector.model, input_size)
        except Exception:
            logger.warning("could not count FLOPs of %s", detector.info.name, exc_info=True)
            _flop_counts[key] = None
    return _flop_counts[key]


def _checkpoint_file(entry, choice) -> tuple[str, object] | None:
    """`(sha256, path)` of the checkpoint a detector will load, when it loads one."""
    if choice.ref.startswith("checkpoint:"):
        return choice.ref.split(":", 1)[1], choice.weights
    if choice.ref != "auto":
        return None
    from inference.weights import WeightsError, checkpoint_source, get_checkpoint_resolver

    resolver = get_checkpoint_resolver()  # without one, "auto" means ImageNet or nothing: no meta
    path = resolver(entry.name) if resolver is not None else None
    if path is None:
        return None
    try:
        source = checkpoint_source(path)
    except WeightsError:
        return None
    return source.sha256, source.path


def _checkpoint_input_size(entry, choice) -> int | None:
    found = _checkpoint_file(entry, choice)
    if found is None:
        return None
    sha256, path = found
    if sha256 not in _checkpoint_meta:
        from inference.weights import load_checkpoint

        _checkpoint_meta[sha256] = load_checkpoint(path)[1]
    size = _checkpoint_meta[sha256].get("input_size")
    return int(size) if isinstance(size, int | float) and not isinstance(size, bool) and size >= 1 else None


def resolve_input_size(entry, choice, override: int | None) -> tuple[int | None, str | None]:
    """The size a learned detector runs at and where it comes from: the experiment's override, the
    checkpoint's `meta["input_size"]`, the registry's default (`catalogue_entry(name).input_size`),
    or the library's default for a plug-in that declares none. Classical detectors: `(None, None)`."""
    if not entry.learned:
        return None, None
    if override:
        return int(override), "override"
    from_checkpoint = _checkpoint_input_size(entry, choice)
    if from_checkpoint:
        return from_checkpoint, "checkpoint"
    if entry.input_size:
        return int(entry.input_size), "registry"
    from inference.detectors.base import DEFAULT_INPUT_SIZE

    return DEFAULT_INPUT_SIZE, "default"


def weights_and_input_size(experiment, name: str, choice: str):
    """`(WeightsChoice, input size, its source)` of detector `name` under weights `choice` in
    `experiment`: the one rule for a detector alone and for an ensemble's member."""
    entry = detector_entry(experiment.owner, name, experiment.dataset)
    if entry.family == "onnx":
        return onnx_weights_and_input_size(experiment.owner, name)
    weights = checkpoints.weights_for(experiment.owner, name, choice, learned=entry.learned)
    return (weights, *resolve_input_size(entry, weights, experiment.input_size))


def onnx_weights_and_input_size(owner, name: str):
    """A user's ONNX model (`onnx:<name>`): its file, copied to this machine and checked against its
    sha256, with its contract; it runs at the size its contract names, or at B's size (`None`) when it
    takes any. An experiment's input-size override does not apply: the file fixes what it takes."""
    from experiments.onnx_models.weights import onnx_weights

    model, weights = onnx_weights(owner, name)
    return weights, model.input_size, "model"


def onnx_device(device: str) -> str:
    """Where an ONNX model runs on this worker: `device` when onnxruntime has its CUDA provider, else the CPU."""
    from inference.detectors.onnx_model import onnx_device as runtime_device

    return runtime_device(device)


@dataclass(frozen=True)
class EnsembleMember:
    """One member of a run's ensemble, resolved as that detector would be alone in the same run."""

    name: str
    learned: bool
    choice: checkpoints.WeightsChoice
    input_size: int | None
    input_size_source: str | None

    def build_options(self) -> dict:
        """The member as `inference.detectors.ensemble.build_ensemble` takes it."""
        return {"name": self.name, "weights": self.choice.weights, "input_size": self.input_size}


def ensemble_member_plan(experiment) -> list[EnsembleMember]:
    """The members of `experiment`'s ensemble (`experiments.checkpoints.weights.ensemble_members`)
    with their weights and input sizes. A learned member whose checkpoint is gone by now is left
    out rather than run with ImageNet or random weights."""
    plan = []
    for name, choice in checkpoints.ensemble_members(experiment):
        weights, size, source = weights_and_input_size(experiment, name, choice)
        learned = catalogue_entry(name).learned
        if learned and not weights.ref.startswith("checkpoint:"):
            continue
        plan.append(EnsembleMember(name, learned, weights, size, source))
    return plan


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


def precision_of(detector) -> str:
    """The precision a loaded detector actually computes in (an ensemble: its members', joined by "+")."""
    members = getattr(detector, "members", None)
    if members:
        return "+".join(sorted({precision_of(member) for member in members}))
    options, device = getattr(detector, "options", None), getattr(detector, "device", None)
    if options is None or device is None or not hasattr(options, "amp_enabled"):
        return "fp32"
    import torch

    from inference.runtime import autocast_dtype

    if not options.amp_enabled(device):
        return "fp32"
    return "bf16" if autocast_dtype(device) == torch.bfloat16 else "fp16"


def device_record(device: str) -> dict:
    """The device part of the result-cache key: the CPU, or the GPU with CUDA and cuDNN versions."""
    if not (device.startswith("cuda") or device == "mixed"):
        return {"type": "cpu"}
    import torch

    if not torch.cuda.is_available():
        return {"type": device}
    return {
        "type": "cuda" if device.startswith("cuda") else device,
        "gpu": torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else None),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def alignment_record(align: bool, alignment: PairAlignment | None) -> dict:
    """The warp applied to A before detection (its method and homography), as the cache key sees it."""
    if not align:
        return {"align": False}
    if alignment is None:
        return {"align": True, "method": None}
    return {"align": True, "method": alignment.method, "ok": alignment.ok, "homography": alignment.homography}


def runtime_options(learned: bool) -> dict:
    if not learned:
        return {}
    from dataclasses import asdict

    from inference.runtime import RuntimeOptions

    return asdict(RuntimeOptions())
