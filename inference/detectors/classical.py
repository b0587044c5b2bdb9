"""Classical baselines registered as detectors; their maps live in the torch-free `inference.pixel_maps`."""

from __future__ import annotations

from inference.detectors.base import ClassicalDetector
from inference.pixel_maps import SSIM_SIGMA, SSIM_WINDOW, colour_distance, structural_dissimilarity
from inference.registry import register_detector

__all__ = ["build_absdiff", "build_ssim", "colour_distance", "structural_dissimilarity"]


@register_detector("absdiff", family="classical", learned=False)
def build_absdiff(*, name: str, weights=None, device=None, blur_sigma: float = 1.0):
    """Normalised RGB colour distance |A - B| / (255 * sqrt(3)) after a light blur."""
    return ClassicalDetector(name, lambda a, b: colour_distance(a, b, blur_sigma), blur_sigma=blur_sigma)


@register_detector("ssim", family="classical", learned=False)
def build_ssim(*, name: str, weights=None, device=None, window: int = SSIM_WINDOW):
    """1 - local SSIM on gray levels (Gaussian window 11, sigma 1.5)."""
    return ClassicalDetector(name, lambda a, b: structural_dissimilarity(a, b, window), window=window, sigma=SSIM_SIGMA)
