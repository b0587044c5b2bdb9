"""Large pairs at the model's own scale: sliding windows of the input size, blended back.

A learned detector resizes a pair to its square input size by default, so a 1024 px tile seen by
a 128 px network is judged at 1/8 of its resolution and small changes vanish. Tiling runs the
network on windows of exactly its input size over B's frame instead (A is resized to B's size
first), with ``overlap`` between neighbours, ``tile_batch`` windows per forward pass, and blends
the window maps back:

- windows step by ``size - round(size * overlap)``; the last window of a row or column is
  shifted back inside the image, so nothing is padded except a side shorter than a window,
  which is mirrored (``np.pad(mode="symmetric")``) up to the window and cropped off again;
- each window's weight is a linear ramp over the overlap on the sides that face another window
  (flat on the image border), normalised so the weights of all windows sum to exactly 1 at
  every pixel: with ``overlap=0`` the windows are simply stitched;
- only one batch of windows is cut, run and held at a time: memory grows with ``tile_batch``
  and the size of B's map, not with the number of windows.

``Scaling.mode`` chooses per pair: ``"resize"`` (the whole pair at the input size), ``"tile"``,
or ``"auto"``: tile when B's longer side is more than ``AUTO_TILE_FACTOR`` times the input size.
This module is NumPy only; ``inference.detectors.learned`` supplies the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

SCALING_MODES = ("auto", "resize", "tile")
AUTO_TILE_FACTOR = 2
DEFAULT_OVERLAP = 0.25
DEFAULT_TILE_BATCH = 8
MAX_OVERLAP = 0.75

AUTO_RULE = f"auto: tile when B's longer side is more than {AUTO_TILE_FACTOR}x the input size, else resize"

# Runs one batch of same-sized (A tile, B tile) uint8 windows; returns N x size x size probabilities.
TilePredictor = Callable[[Sequence[tuple[np.ndarray, np.ndarray]]], np.ndarray]


def check_mode(mode) -> str:
    if mode not in SCALING_MODES:
        raise ValueError(f"unknown scaling {mode!r}: use one of {', '.join(SCALING_MODES)}")
    return mode


@dataclass(frozen=True)
class Scaling:
    """How a learned detector sees a pair: ``mode`` (auto | resize | tile) and the tiling details."""

    mode: str = "auto"
    overlap: float = DEFAULT_OVERLAP
    tile_batch: int = DEFAULT_TILE_BATCH

    def __post_init__(self):
        check_mode(self.mode)
        if not 0.0 <= float(self.overlap) <= MAX_OVERLAP:
            raise ValueError(f"tile overlap must be between 0 and {MAX_OVERLAP}, not {self.overlap}")
        if int(self.tile_batch) < 1:
            raise ValueError(f"tile batch must be at least 1, not {self.tile_batch}")

    @classmethod
    def of(cls, value) -> Scaling:
        """A ``Scaling`` from itself, a mode string, a mapping of the fields, or None (the default)."""
        if isinstance(value, Scaling):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"scaling must be one of {', '.join(SCALING_MODES)}, not {value!r}")

    def tiles(self, height: int, width: int, input_size: int) -> bool:
        """Whether a B of ``height`` x ``width`` is tiled (True) or resized (False)."""
        if self.mode == "auto":
            return max(height, width) > AUTO_TILE_FACTOR * input_size
        return self.mode == "tile"

    def record(self) -> dict:
        """What a detector's record says about its scaling (the choice and the rule behind "auto")."""
        return {"mode": self.mode, "overlap": self.overlap, "tile_batch": self.tile_batch, "rule": AUTO_RULE}


# --------------------------------------------------------------------------- geometry
def window_starts(length: int, size: int, overlap: float) -> list[int]:
    """Offsets of windows of ``size`` covering ``0..length``; the last one ends at ``length``."""
    if length <= size:
        return [0]
    stride = max(1, size - round(size * overlap))
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


def _ramp_weights(starts: list[int], length: int, size: int, ramp: int) -> np.ndarray:
    """Per-window 1-D weights (len(starts) x size), normalised to sum to 1 at every position.

    A side facing another window ramps linearly up over ``ramp`` pixels; a side on the border
    stays flat, so border pixels keep a positive weight."""
    raw = np.ones((len(starts), size), np.float64)
    if ramp > 0:
        up = (np.arange(ramp, dtype=np.float64) + 0.5) / ramp
        for index, start in enumerate(starts):
            if start > 0:
                raw[index, :ramp] = np.minimum(raw[index, :ramp], up)
            if start + size < length:
                raw[index, size - ramp :] = np.minimum(raw[index, size - ramp :], up[::-1])
    total = np.zeros(max(length, size), np.float64)
    for index, start in enumerate(starts):
        total[start : start + size] += raw[index]
    return np.stack([raw[i] / total[s : s + size] for i, s in enumerate(starts)]).astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """The windows over a (padded) frame and their blend weights; weights sum to 1 per pixel."""

    size: int
    height: int  # the frame the windows cover: B's size, each side at least ``size``
    width: int
    rows: list[int]
    cols: list[int]
    row_weights: np.ndarray  # len(rows) x size
    col_weights: np.ndarray  # len(cols) x size

    @classmethod
    def plan(cls, height: int, width: int, size: int, overlap: float = DEFAULT_OVERLAP) -> TileGrid:
        height, width = max(height, size), max(width, size)
        ramp = round(size * overlap)
        rows, cols = window_starts(height, size, overlap), window_starts(width, size, overlap)
        return cls(
            size=size,
            height=height,
            width=width,
            rows=rows,
            cols=cols,
            row_weights=_ramp_weights(rows, height, size, ramp),
            col_weights=_ramp_weights(cols, width, size, ramp),
        )

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def windows(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(top, left, weight)`` of each window, row by row; ``weight`` is size x size."""
        for i, top in enumerate(self.rows):
            for j, left in enumerate(self.cols):
                yield top, left, np.outer(self.row_weights[i], self.col_weights[j])


# --------------------------------------------------------------------------- running
def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    pad_h, pad_w = height - image.shape[0], width - image.shape[1]
    if pad_h <= 0 and pad_w <= 0:
        return image
    return np.pad(image, ((0, max(pad_h, 0)), (0, max(pad_w, 0)), (0, 0)), mode="symmetric")


def _batches(items: Iterator, count: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == count:
            yield batch
            batch = []
    if batch:
        yield batch


def tiled_map(
    a: np.ndarray,
    b: np.ndarray,
    *,
    size: int,
    predict_tiles: TilePredictor,
    overlap: float = DEFAULT_OVERLAP,
    tile_batch: int = DEFAULT_TILE_BATCH,
) -> np.ndarray:
    """B-sized float32 probability map from windows of ``size``; A must already be B's size.

    ``predict_tiles`` is called with at most ``tile_batch`` window pairs at a time, and the
    windows of one call are released before the next batch is cut."""
    if a.shape != b.shape:
        raise ValueError(f"A {a.shape} must be resized to B's size {b.shape} before tiling")
    height, width = b.shape[:2]
    grid = TileGrid.plan(height, width, size, overlap)
    a, b = _pad_to(a, grid.height, grid.width), _pad_to(b, grid.height, grid.width)
    blended = np.zeros((grid.height, grid.width), np.float32)
    for batch in _batches(grid.windows(), max(1, int(tile_batch))):
        crops = [(a[y : y + size, x : x + size], b[y : y + size, x : x + size]) for y, x, _ in batch]
        probs = predict_tiles(crops)
        for (top, left, weight), prob in zip(batch, probs, strict=True):
            blended[top : top + size, left : left + size] += weight * prob
        del batch, crops, probs  # this batch's windows go before the next batch is cut
    return np.clip(blended[:height, :width], 0.0, 1.0)
