"""Classical baselines as detectors; their maps live in the torch-free `inference.pixel_maps`.

Declared in `inference.builtin_detectors`, which refers to the builders here by dotted path.
"""

from __future__ import annotations

from inference.detectors.base import ClassicalDetector
from inference.pixel_maps import SSIM_SIGMA, SSIM_WINDOW, colour_distance, structural_dissimilarity

__all__ = ["build_absdiff", "build_ssim", "colour_distance", "structural_dissimilarity"]


def build_absdiff(*, name: str, weights=None, device=None, blur_sigma: float = 1.0):
    """Normalised RGB colour distance |A - B| / (255 * sqrt(3)) after a light blur."""
    return ClassicalDetector(name, lambda a, b: colour_distance(a, b, blur_sigma), blur_sigma=blur_sigma)


def build_ssim(*, name: str, weights=None, device=None, window: int = SSIM_WINDOW):
    """1 - local SSIM on gray levels (Gaussian window 11, sigma 1.5)."""
    return ClassicalDetector(name, lambda a, b: structural_dissimilarity(a, b, window), window=window, sigma=SSIM_SIGMA)
