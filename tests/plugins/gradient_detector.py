"""A torch-free classical detector plug-in: the normalised difference of gradient magnitudes.

Load it in any process with ``DIFFPLATFORM_DETECTOR_MODULES=tests.plugins.gradient_detector``
(or ``inference.registry.load_detector_modules([...])``); importing it registers
``"gradient-diff"``. Edges that appear, vanish or change strength light up; flat colour changes
without new edges do not.
"""

from __future__ import annotations

import cv2
import numpy as np

from inference.detectors.base import ClassicalDetector
from inference.registry import register_detector

NAME = "gradient-diff"
SOFT_FLOOR = 64.0  # gradient magnitude added to the denominator: flat, noisy areas stay near 0


def gradient_magnitude(image: np.ndarray, blur_sigma: float) -> np.ndarray:
    """Sobel gradient magnitude of the gray levels (float32, HxW) after a light blur."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), blur_sigma)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def gradient_difference(a: np.ndarray, b: np.ndarray, blur_sigma: float = 1.0) -> np.ndarray:
    """``|g(A) - g(B)| / (g(A) + g(B) + SOFT_FLOOR)`` in [0, 1): 0 where the edges agree."""
    ga, gb = gradient_magnitude(a, blur_sigma), gradient_magnitude(b, blur_sigma)
    return (np.abs(ga - gb) / (ga + gb + SOFT_FLOOR)).astype(np.float32)


@register_detector(
    NAME,
    family="classical",
    learned=False,
    relative_cost=3,
    description="Normalised difference of Sobel gradient magnitudes (test plug-in).",
)
def build_gradient_diff(*, name: str, weights=None, device=None, blur_sigma: float = 1.0):
    """Normalised difference of Sobel gradient magnitudes of A and B."""
    return ClassicalDetector(name, lambda a, b: gradient_difference(a, b, blur_sigma), blur_sigma=blur_sigma)
