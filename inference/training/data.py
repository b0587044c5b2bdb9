"""Training and validation samples: pairs to (A, B, label) triples, crops, augmentation, tensors.

Training pairs get paired geometric and independent nuisance augmentations
(``inference.augment``), including, for ``WARP_PROBABILITY`` of them, a small viewpoint
homography applied to A only (the label stays in B's frame), so that unaligned but unchanged
content is learned as no change; validation pairs are cut into tiles and used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from inference.augment import augment_pair, random_crop

WARP_PROBABILITY = 0.3

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def as_triple(pair) -> Triple:
    """``(a, b, label)`` from a pair object (``.a, .b, .label``) or tuple; label bool in B's frame."""
    a, b, label = (pair.a, pair.b, pair.label) if hasattr(pair, "a") else pair
    label = np.asarray(label)
    if label.ndim == 3:
        label = label[..., 0]
    label = label > 0 if label.dtype != bool else label
    if label.shape != b.shape[:2]:
        raise ValueError(f"label shape {label.shape} does not match B's size {b.shape[:2]}")
    if a.shape != b.shape:
        a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(a), np.ascontiguousarray(b), label


def fit_to_size(triple: Triple, size: int) -> Triple:
    """Resize a triple to ``size`` x ``size`` (label by nearest neighbour)."""
    a, b, label = triple
    if label.shape == (size, size):
        return triple
    a = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
    b = cv2.resize(b, (size, size), interpolation=cv2.INTER_AREA)
    label = cv2.resize(label.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return a, b, label


def training_sample(triple: Triple, rng: np.random.Generator, size: int) -> Triple:
    """A random ``size`` crop (or the resized triple), augmented; A may get a viewpoint warp."""
    height, width = triple[2].shape
    if height >= size and width >= size:
        triple = random_crop(*triple, rng, size)
    return augment_pair(*fit_to_size(triple, size), rng, warp_probability=WARP_PROBABILITY)


def validation_tiles(triple: Triple, size: int) -> list[Triple]:
    """Non-overlapping ``size`` tiles covering the image (resized when it is smaller)."""
    a, b, label = triple
    height, width = label.shape
    if height < size or width < size:
        return [fit_to_size(triple, size)]
    return [
        (
            a[y : y + size, x : x + size],
            b[y : y + size, x : x + size],
            label[y : y + size, x : x + size],
        )
        for y in range(0, height - size + 1, size)
        for x in range(0, width - size + 1, size)
    ]


def to_tensors(detector, samples: Sequence[Triple]) -> tuple[torch.Tensor, ...]:
    """``(xa, xb, label)``: the detector's normalised inputs and an N x 1 x S x S float label."""
    xa = detector.preprocess([s[0] for s in samples])
    xb = detector.preprocess([s[1] for s in samples])
    label = torch.from_numpy(np.stack([s[2] for s in samples]).astype(np.float32))
    return xa, xb, label[:, None].to(detector.device)
