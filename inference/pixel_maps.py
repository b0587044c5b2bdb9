"""The classical change maps (colour distance, 1 - SSIM) with NumPy and OpenCV only: no torch.

`inference.detectors.classical` wraps the same computation in the Detector contract; this module
exists so that the web process can answer a quick two-image diff (`POST /api/v1/diff/`) without
importing torch. A test keeps both in step (same maps for the same inputs).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MAX_RGB_DISTANCE = 255.0 * math.sqrt(3.0)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2


def colour_distance(a: np.ndarray, b: np.ndarray, blur_sigma: float = 1.0) -> np.ndarray:
    """Euclidean RGB distance per pixel divided by its maximum, 255 * sqrt(3), after a light blur."""
    a = _blur(a.astype(np.float32), blur_sigma)
    b = _blur(b.astype(np.float32), blur_sigma)
    return np.sqrt(np.sum((a - b) ** 2, axis=2)) / MAX_RGB_DISTANCE


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


MAPS = {"absdiff": colour_distance, "ssim": structural_dissimilarity}


def change_map(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The named classical map in B's frame: A is resized to B's size first, as detectors do."""
    if a.shape[:2] != b.shape[:2]:
        shrinking = b.shape[0] * b.shape[1] < a.shape[0] * a.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=interpolation)
    prob = np.ascontiguousarray(MAPS[name](a, b), dtype=np.float32)
    return np.clip(prob, 0.0, 1.0, out=prob)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def _window_mean(image: np.ndarray, window: int, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (window, window), sigmaX=sigma, sigmaY=sigma)
