"""The one detector contract every registered detector follows (torch-free; see ``learned``).

``predict(a, b)`` takes RGB uint8 images A ("before") and B ("after") and returns a float32
HxW change probability in [0, 1] in B's frame and at B's size; A is resized to B's size when
they differ (callers align first when asked). ``predict_batch(pairs)`` returns the same maps
for many pairs; learned detectors run one forward per batch.

Learned detectors resize both images to their square ``input_size`` for the network and
resize the probability map back to B's size, or tile B's frame at that size when their
``scaling`` says so (``inference.tiling``; ``set_scaling``). They expose ``model`` (``forward(xa, xb)`` takes
normalised N x 3 x H x W tensors and returns change logits N x 1 x H x W at the input
resolution), ``preprocess(images)`` and ``device`` so training code can drive the network;
they live in ``inference.detectors.learned``. This module imports no torch, so a classical
plug-in built on ``ClassicalDetector`` keeps listing and the catalogue torch-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

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

    def set_scaling(self, scaling) -> Detector:
        """How a learned detector fits a pair to its input size (``inference.tiling``); a detector
        that computes at B's own size has nothing to scale and keeps itself as it is."""
        return self

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
