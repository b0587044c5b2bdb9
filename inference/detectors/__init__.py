"""Built-in detectors; importing this package registers them (see ``inference.registry``)."""

from inference.detectors import classical, compare_head, ensemble, siamese, unet
from inference.detectors.base import Detector, DetectorInfo, LearnedDetector

__all__ = [
    "Detector",
    "DetectorInfo",
    "LearnedDetector",
    "classical",
    "compare_head",
    "ensemble",
    "siamese",
    "unet",
]
