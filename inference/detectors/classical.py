"""Classical baselines computed from pixels: colour distance and structural dissimilarity."""

from __future__ import annotations

import math

import cv2
import numpy as np

from inference.detectors.base import ClassicalDetector
from inference.registry import register_detector

MAX_RGB_DISTANCE = 255.0 * math.sqrt(3.0)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2


def colour_distance(a: np.ndarray, b: np.ndarray, blur_sigma: float = 1.0) -> np.ndarray:
    """Euclidean RGB distance per pixel divided by its maximum, 255 * sqrt(3).

    A light Gaussian blur first (``blur_sigma`` > 0) keeps single-pixel noise and slight
    misregistration from lighting up the map.
    """
    a = _blur(a.astype(np.float32), blur_sigma)
    b = _blur(b.astype(np.float32), blur_sigma)
    distance = np.sqrt(np.sum((a - b) ** 2, axis=2))
    return distance / MAX_RGB_DISTANCE


def structural_dissimilarity(
    a: np.ndarray, b: np.ndarray, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA
) -> np.ndarray:
    """``1 - SSIM`` per pixel on gray levels (Gaussian window, Wang et al. 2004), clipped to [0, 1]."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mu_x, mu_y = _window_mean(x, window, sigma), _window_mean(y, window, sigma)
    var_x = _window_mean(x * x, window, sigma) - mu_x * mu_x
    var_y = _window_mean(y * y, window, sigma) - mu_y * mu_y
    cov = _window_mean(x * y, window, sigma) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return np.clip(1.0 - numerator / denominator, 0.0, 1.0)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def _window_mean(image: np.ndarray, window: int, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (window, window), sigmaX=sigma, sigmaY=sigma)


@register_detector("absdiff", family="classical", learned=False)
def build_absdiff(*, name: str, weights=None, device=None, blur_sigma: float = 1.0):
    """Normalised RGB colour distance |A - B| / (255 * sqrt(3)) after a light blur."""
    return ClassicalDetector(name, lambda a, b: colour_distance(a, b, blur_sigma), blur_sigma=blur_sigma)


@register_detector("ssim", family="classical", learned=False)
def build_ssim(*, name: str, weights=None, device=None, window: int = SSIM_WINDOW):
    """1 - local SSIM on gray levels (Gaussian window 11, sigma 1.5)."""
    return ClassicalDetector(name, lambda a, b: structural_dissimilarity(a, b, window), window=window, sigma=SSIM_SIGMA)
