"""Training augmentations for change-detection pairs.

Two kinds, with different rules:

- *paired* geometric ops (flips, 90-degree rotations, crops) move A, B and the label together, so
  the label still marks the same pixels;
- *nuisance* ops (brightness/contrast, blur, noise, a 1-3 px shift of A, and optionally a small
  viewpoint homography of A) change each image on its own and never touch the label: they are
  exactly the differences a detector must learn to ignore. Shifts and warps apply to A only
  because labels live in B's frame.

All functions take RGB uint8 images, a bool label and an ``np.random.Generator``; they return new
arrays and never modify their inputs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def paired_augment(
    a: np.ndarray,
    b: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    crop: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop (when ``crop`` is smaller than the images), flips and a 90-degree rotation."""
    if crop is not None:
        a, b, label = random_crop(a, b, label, rng, crop)
    if rng.random() < 0.5:
        a, b, label = a[:, ::-1], b[:, ::-1], label[:, ::-1]
    if rng.random() < 0.5:
        a, b, label = a[::-1], b[::-1], label[::-1]
    turns = int(rng.integers(0, 4))
    a, b, label = (np.rot90(x, turns) for x in (a, b, label))
    return tuple(np.ascontiguousarray(x) for x in (a, b, label))


def random_crop(
    a: np.ndarray, b: np.ndarray, label: np.ndarray, rng: np.random.Generator, crop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same ``crop`` x ``crop`` window of all three; images smaller than ``crop`` are kept."""
    height, width = label.shape
    if crop >= height and crop >= width:
        return a, b, label
    top = int(rng.integers(0, max(height - crop, 0) + 1))
    left = int(rng.integers(0, max(width - crop, 0) + 1))
    window = (slice(top, top + crop), slice(left, left + crop))
    return a[window], b[window], label[window]


def nuisance_augment(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    *,
    strength: float = 1.0,
    max_shift: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Independent photometric and sensor nuisances on A and B, plus a small shift of A.

    ``strength`` scales every effect (0 disables them); ``max_shift`` bounds A's shift in pixels.
    """
    a = _nuisance_one(a, rng, strength)
    b = _nuisance_one(b, rng, strength)
    if max_shift > 0 and rng.random() < 0.5 * strength:
        a = shift_image(a, *rng.integers(1, max_shift + 1, 2) * rng.choice([-1, 1], 2))
    return a, b


def augment_pair(
    a: np.ndarray,
    b: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    crop: int | None = None,
    strength: float = 1.0,
    warp_probability: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired geometric ops followed by nuisance ops: the full training-time augmentation.

    With probability ``warp_probability`` A is also seen from a slightly different viewpoint
    (``warp_viewpoint``), so a detector learns that unaligned but unchanged content is no change.
    """
    a, b, label = paired_augment(a, b, label, rng, crop=crop)
    a, b = nuisance_augment(a, b, rng, strength=strength)
    if warp_probability > 0 and rng.random() < warp_probability:
        a = warp_viewpoint(a, rng)
    return a, b, label


def random_viewpoint_homography(rng: np.random.Generator, size: int) -> np.ndarray:
    """A homography between two near-nadir views of a ``size``-pixel image.

    Small rotation (+-4 deg), scale (+-6%), shear (+-0.04), perspective (+-0.06) and a shift of
    2-8% of the size, composed about the image centre. The synthetic benchmark's ``misaligned``
    pairs use the same distribution.
    """
    angle = math.radians(rng.uniform(-4.0, 4.0))
    scale = rng.uniform(0.94, 1.06)
    shear = rng.uniform(-0.04, 0.04)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = scale * rotation @ np.array([[1.0, shear], [0.0, 1.0]])
    shift_angle = rng.uniform(0, 2 * math.pi)
    shift = rng.uniform(0.02, 0.08) * np.array([math.cos(shift_angle), math.sin(shift_angle)])
    normalised = np.eye(3)
    normalised[:2, :2] = linear
    normalised[:2, 2] = shift
    normalised[2, :2] = rng.uniform(-0.06, 0.06, 2)
    # Normalised coordinates: origin at the image centre, unit = image size.
    to_norm = np.array([[1 / size, 0, -0.5], [0, 1 / size, -0.5], [0, 0, 1]])
    homography = np.linalg.inv(to_norm) @ normalised @ to_norm
    return homography / homography[2, 2]


def warp_viewpoint(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` through a random ``random_viewpoint_homography``, reflecting at the borders."""
    height, width = img.shape[:2]
    homography = random_viewpoint_homography(rng, max(height, width))
    return cv2.warpPerspective(img, homography, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def shift_image(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by whole pixels, reflecting at the borders so no black edge appears."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    height, width = img.shape[:2]
    return cv2.warpAffine(img, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)


def _nuisance_one(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    out = img.astype(np.float32)
    if rng.random() < 0.8 * strength:
        contrast = 1.0 + rng.uniform(-0.2, 0.2) * strength
        brightness = rng.uniform(-20, 20) * strength
        cast = 1.0 + rng.uniform(-0.05, 0.05, 3).astype(np.float32) * strength
        mean = out.mean(axis=(0, 1), keepdims=True)
        out = (out - mean) * contrast + mean * cast + brightness
    if rng.random() < 0.3 * strength:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5 * strength:
        out = out + rng.normal(0, rng.uniform(1.0, 6.0) * strength, out.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
