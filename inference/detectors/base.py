"""The one detector contract every registered detector follows.

``predict(a, b)`` takes RGB uint8 images A ("before") and B ("after") and returns a float32
HxW change probability in [0, 1] in B's frame and at B's size; A is resized to B's size when
they differ (callers align first when asked). ``predict_batch(pairs)`` returns the same maps
for many pairs; learned detectors run one forward per batch.

Learned detectors resize both images to their square ``input_size`` for the network and
resize the probability map back to B's size. They expose ``model`` (``forward(xa, xb)`` takes
normalised N x 3 x H x W tensors and returns change logits N x 1 x H x W at the input
resolution), ``preprocess(images)`` and ``device`` so training code can drive the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 256

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DetectorInfo:
    """What a detector is and where its weights came from.

    ``weights`` is the provenance: ``"none"`` (classical), ``"imagenet"`` (ImageNet backbone,
    rest random: see ``extra["decoder"]``), ``"checkpoint:<sha256>"`` or ``"random"``.
    """

    name: str
    family: str
    learned: bool
    params: int
    input_size: int | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    weights: str
    weights_sha256: str | None
    device: str
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["mean"] = list(self.mean) if self.mean is not None else None
        data["std"] = list(self.std) if self.std is not None else None
        return data


def check_image(image: np.ndarray, role: str) -> np.ndarray:
    """Refuse anything but an RGB uint8 HxWx3 array, saying what was received."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = type(image).__name__ if not isinstance(image, np.ndarray) else image.dtype
        raise ValueError(f"image {role} must be a uint8 numpy array (RGB), got {got}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(
            f"image {role} must have shape HxWx3 (RGB), got {image.shape}: load files with inference.load_image"
        )
    return image


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing) and bilinear when enlarging."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def match_size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A resized to B's size (the contract: maps live in B's frame)."""
    return resize_image(a, b.shape[0], b.shape[1])


def resize_probability(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    if prob.shape != (height, width):
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(prob, 0.0, 1.0, out=prob)


class Detector:
    """Base class: subclasses set ``info`` and implement ``predict_batch``."""

    info: DetectorInfo

    def predict(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.predict_batch([(a, b)])[0]

    def predict_batch(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.name} weights={self.info.weights}>"


class ClassicalDetector(Detector):
    """A detector computed directly from pixels (NumPy/OpenCV); needs no weights."""

    family = "classical"
    learned = False

    def __init__(self, name: str, compute: Callable[[np.ndarray, np.ndarray], np.ndarray], **extra):
        self._compute = compute
        self.info = DetectorInfo(
            name=name,
            family=self.family,
            learned=False,
            params=0,
            input_size=None,
            mean=None,
            std=None,
            weights="none",
            weights_sha256=None,
            device="cpu",
            extra=extra,
        )

    def predict_batch(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        return [self._predict_one(a, b) for a, b in pairs]

    def _predict_one(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        check_image(a, "A")
        check_image(b, "B")
        prob = self._compute(match_size(a, b), b)
        return resize_probability(prob, b.shape[0], b.shape[1])


# --- learned detectors ----------------------------------------------------------------------


class LearnedDetector(Detector):
    """A detector backed by a ``torch.nn.Module`` with ``forward(xa, xb) -> logits``.

    Build one with ``build_learned_detector``; the network is created once and reused for
    every pair (nothing reloads per call).
    """

    def __init__(self, *, info: DetectorInfo, model, device, options):
        from inference.runtime import prepare_model

        self.info = info
        self.model = model
        self.device = device
        self.options = options
        self.input_size = info.input_size
        self._run = prepare_model(model, device, options)
        self._scale, self._shift = _normalisation(info.mean, info.std, device)

    def preprocess(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 image(s) -> normalised float tensor N x 3 x S x S on ``self.device``.

        Images are resized to the detector's ``input_size`` (S) first.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        size = self.input_size
        batch = np.stack([resize_image(check_image(img, "input"), size, size) for img in images])
        tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
        # NHWC uint8 -> NCHW view: already channels_last in memory, no copy.
        tensor = tensor.permute(0, 3, 1, 2).float()
        tensor = tensor.mul_(self._scale).add_(self._shift)
        return _memory_format(tensor, self.options.channels_last)

    @contextlib.contextmanager
    def running(self):
        """Eval mode, ``inference_mode`` and AMP on CUDA; the previous train/eval mode comes back.

        A training loop may have left the model in train mode (dropout, batch statistics).
        """
        from inference.runtime import autocast

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, self.options.amp_enabled(self.device)):
                yield
        finally:
            self.model.train(was_training)

    def forward_logits(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """The network's logits as float32, run as ``running()`` describes."""
        with self.running():
            return self._run(xa, xb).float()

    def predict_batch(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        maps: list[np.ndarray] = []
        step = max(1, self.options.batch_size)
        for start in range(0, len(pairs), step):
            maps.extend(self._predict_chunk(pairs[start : start + step]))
        return maps

    def _predict_chunk(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        for a, b in pairs:
            check_image(a, "A")
            check_image(b, "B")
        # A is resized straight to the input size: the same geometry as "A to B's size, then
        # to the input size", with one interpolation instead of two.
        xa = self.preprocess([a for a, _ in pairs])
        xb = self.preprocess([b for _, b in pairs])
        with torch.inference_mode():
            probs = torch.sigmoid(self.forward_logits(xa, xb))[:, 0].cpu().numpy()
        return [resize_probability(p, b.shape[0], b.shape[1]) for p, (_, b) in zip(probs, pairs, strict=True)]


def _normalisation(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / 255 - mean) / std`` as one multiply-add: ``x * scale + shift``."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (1.0 / (255.0 * std_t)).to(device), (-mean_t / std_t).to(device)


def _memory_format(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor.contiguous()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build_learned_detector(
    *,
    name: str,
    family: str,
    make_model: Callable,
    weights,
    device,
    backbone: str | None = None,
    input_size: int | None = None,
    options=None,
    detector_class: type[LearnedDetector] = LearnedDetector,
) -> LearnedDetector:
    """Resolve weights, build the network once, load its weights, wrap it in a detector.

    ``make_model(backbone_state)`` builds the network; ``backbone_state`` is the torchvision
    ImageNet state dict when the weights resolve to ``"imagenet"``, else ``None``.
    ``input_size=None`` takes the checkpoint's ``meta["input_size"]`` or 256.
    """
    from inference import weights as weights_io
    from inference.runtime import RuntimeOptions, select_device

    chosen_device = select_device(device)
    source = weights_io.resolve_weights(name, weights, backbone=backbone)
    backbone_state = None
    if source.kind == "imagenet":
        backbone_state = weights_io.load_imagenet_state_dict(source)
    model = make_model(backbone_state)
    extra: dict = {"backbone": backbone} if backbone else {}
    meta: dict = {}
    if source.kind == "checkpoint":
        meta = weights_io.apply_checkpoint(model, source, detector_name=name)
        extra["checkpoint_meta"] = meta
    elif source.kind == "imagenet":
        extra.update(backbone_weights="imagenet", decoder="random")
    info = DetectorInfo(
        name=name,
        family=family,
        learned=True,
        params=count_parameters(model),
        input_size=int(input_size or meta.get("input_size") or DEFAULT_INPUT_SIZE),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=source.provenance,
        weights_sha256=source.sha256,
        device=str(chosen_device),
        extra=extra,
    )
    return detector_class(info=info, model=model, device=chosen_device, options=options or RuntimeOptions())
