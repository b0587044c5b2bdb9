"""Small seeded images for detector tests, and an isolated weights environment."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

CHANGE_BOX = (slice(20, 44), slice(30, 60))  # rows, cols of the change painted into B


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def textured_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random texture (not white noise), so structure-based detectors see structure."""
    coarse = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    rows = np.linspace(0, coarse.shape[0] - 1.001, height)
    cols = np.linspace(0, coarse.shape[1] - 1.001, width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    image = top * (1 - fr) + bottom * fr + rng.normal(0, 3, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def changed_pair(rng: np.random.Generator, height: int = 64, width: int = 80):
    """(A, B, label): B is A with a bright checkered box painted at CHANGE_BOX."""
    a = textured_image(rng, height, width)
    b = a.copy()
    box = b[CHANGE_BOX]
    checker = (np.indices(box.shape[:2]).sum(axis=0) // 4) % 2
    box[:] = np.where(checker[..., None] == 1, [250, 240, 30], [20, 30, 200]).astype(np.uint8)
    label = np.zeros((height, width), dtype=bool)
    label[CHANGE_BOX] = True
    return a, b, label


@pytest.fixture
def pair(rng):
    return changed_pair(rng)


@pytest.fixture(autouse=True)
def isolated_weights(tmp_path, monkeypatch):
    """No platform resolver and an empty torch cache, so nothing real is found by accident."""
    from inference import weights as weights_io

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(weights_io, "_checkpoint_resolver", None)
    return tmp_path / "torch-home"


@pytest.fixture
def pair_files(tmp_path, rng):
    a, b, label = changed_pair(rng)
    paths = {}
    for name, array in (("a", a), ("b", b), ("label", (label * 255).astype(np.uint8))):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(array).save(paths[name])
    return paths, b.shape[:2]
