"""Fingerprints that find the same scene twice: exact copies and near-duplicates (re-encoded, shifted
by a few pixels, cropped by up to 10%), and a matcher that scales to tens of thousands of images.

A fingerprint holds the sha256 of the decoded pixels (exact copies, whatever the file format) and
64-bit DCT perceptual hashes (pHash: the signs of the lowest 8x8 DCT coefficients of a 32x32 grey
thumbnail against their median) of several windows of the image: the whole image first, then
windows covering 90% of the width and/or height at the corners, edge centres and centre. A crop
that keeps at least 90% of each side is close to one of these windows, so the whole-image hash of
one image is compared with every window hash of the other (both ways). A single whole-image pHash
is not robust to 10% crops (distance up to ~20 of 64, as for unrelated scenes); the windows are.

Two images are near-duplicates when that smallest distance is at most `THRESHOLD` bits. The
threshold and its measured rates are documented in docs/datasets.md ("Leakage audit").

Matching uses multi-index hashing (Norouzi et al., 2012): each 64-bit hash is cut into `BANDS`
bands of 16 bits; two hashes within `THRESHOLD` bits agree within `THRESHOLD // BANDS` bits on at
least one band, so only hashes found by probing those neighbourhoods are compared. It finds exactly
what an all-pairs comparison finds, without comparing all pairs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import cv2
import numpy as np

THRESHOLD = 12  # bits of 64; see docs/datasets.md for the rates measured at this value
BANDS = 4
BAND_BITS = 64 // BANDS
THUMB = 128  # every image is first brought to THUMB x THUMB grey, then windows are cut from that
HASH_SIDE = 32
QUERY_CHUNK = 1024  # images whose candidates are gathered at once (bounds the memory)
TINT_THRESHOLD = 24  # bits of 64 on the colour (red minus blue) hash of the same two windows
FLAT_TINT = 3.0  # below this spread of red minus blue (0..255) an image counts as grey: tint hash 0


def _windows() -> tuple[tuple[float, float, float, float], ...]:
    """(x0, y0, x1, y1) fractions: the whole image, then 90% windows in x, y or both."""
    spans = {1.0: (0.0,), 0.9: (0.0, 0.05, 0.1)}
    out = [(0.0, 0.0, 1.0, 1.0)]
    for sx, sy in ((0.9, 1.0), (1.0, 0.9), (0.9, 0.9)):
        out += [(x, y, x + sx, y + sy) for y in spans[sy] for x in spans[sx]]
    return tuple(out)


WINDOWS = _windows()


@dataclass(frozen=True)
class Fingerprint:
    """`content`: sha256 of the decoded pixels; `hashes`: one pHash per window of `WINDOWS`, whole first."""

    content: str
    hashes: tuple[int, ...]
    tints: tuple[int, ...] = ()

    def as_text(self) -> str:
        return ":".join([self.content, *(",".join(f"{h:016x}" for h in codes) for codes in (self.hashes, self.tints))])

    @classmethod
    def from_text(cls, text: str) -> Fingerprint:
        content, _, rest = text.partition(":")
        hashes, _, tints = rest.partition(":")
        return cls(content, *(tuple(int(h, 16) for h in codes.split(",") if h) for codes in (hashes, tints)))


def fingerprint(image: np.ndarray) -> Fingerprint:
    """The fingerprint of an RGB (HxWx3) or grey (HxW) uint8 image."""
    pixels = np.ascontiguousarray(image)
    content = hashlib.sha256(f"{pixels.shape}|{pixels.dtype}".encode() + pixels.tobytes()).hexdigest()
    rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels[..., :3]
    thumb = cv2.resize(rgb.astype(np.float32), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    grey = thumb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    tint = thumb[..., 0] - thumb[..., 2]  # red minus blue: tells red marks from blue ones of one grey
    tinted = float(tint.std()) >= FLAT_TINT
    hashes, tints = [], []
    for x0, y0, x1, y1 in WINDOWS:
        rows, cols = slice(round(y0 * THUMB), round(y1 * THUMB)), slice(round(x0 * THUMB), round(x1 * THUMB))
        hashes.append(_phash(grey[rows, cols]))
        tints.append(_phash(tint[rows, cols]) if tinted else 0)
    return Fingerprint(content=content, hashes=tuple(hashes), tints=tuple(tints))


def _phash(window: np.ndarray) -> int:
    small = cv2.resize(np.ascontiguousarray(window), (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :9].ravel()[1:65]  # the 8x8 lowest frequencies, DC swapped for (0, 8)
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def distance(a: Fingerprint, b: Fingerprint) -> int:
    """0 for the same pixels, else the smallest Hamming distance between one image's whole-image hash
    and a window hash of the other whose colour hash agrees within `TINT_THRESHOLD` (64 when none does)."""
    if a.content == b.content:
        return 0
    found = [
        (query.hashes[0] ^ h).bit_count()
        for query, other in ((a, b), (b, a))
        for h, t in zip(other.hashes, _padded(other.tints, len(other.hashes)), strict=True)
        if (_padded(query.tints, 1)[0] ^ t).bit_count() <= TINT_THRESHOLD
    ]
    return min(found, default=64)


@dataclass(frozen=True)
class Match:
    first: int  # index into the fingerprints given, first < second
    second: int
    distance: int  # 0 with `exact`
    exact: bool


def find_matches(
    prints: Sequence[Fingerprint], *, groups: Sequence[int] | None = None, threshold: int = THRESHOLD
) -> list[Match]:
    """Every pair of `prints` that are exact or near-duplicates, each pair once, sorted.

    With `groups` (one int per print), only pairs in different groups are reported (e.g. the
    split's number, so images of one split are not compared with each other).
    """
    if not prints:
        return []
    group = np.asarray(groups if groups is not None else range(len(prints)), dtype=np.int64)
    found: dict[tuple[int, int], tuple[int, bool]] = {}
    by_content: dict[str, list[int]] = {}
    for index, fp in enumerate(prints):
        by_content.setdefault(fp.content, []).append(index)
    for same in by_content.values():
        for i, j in combinations(same, 2):
            if group[i] != group[j]:
                found[(i, j)] = (0, True)
    near = _near_pairs(prints, group, threshold)
    for i, j, d in near:
        key = (min(i, j), max(i, j))
        if key not in found or found[key][0] > d:
            found[key] = (d, False)
    return [Match(i, j, d, exact) for (i, j), (d, exact) in sorted(found.items())]


def _near_pairs(prints: Sequence[Fingerprint], group: np.ndarray, threshold: int):
    """(i, j, distance) with image i's whole hash within `threshold` of one of image j's window
    hashes whose colour hash agrees too (see `distance`)."""
    count = len(WINDOWS)
    codes = np.array([h for fp in prints for h in _padded(fp.hashes, count)], dtype=np.uint64)
    tints = np.array([t for fp in prints for t in _padded(fp.tints, count)], dtype=np.uint64)
    owner = np.repeat(np.arange(len(prints), dtype=np.int64), count)
    index = _BandIndex(codes, threshold)
    best: dict[tuple[int, int], int] = {}
    for start in range(0, len(prints), QUERY_CHUNK):
        query, code = index.candidates(codes[start * count : (start + QUERY_CHUNK) * count : count])
        i, j = query + start, owner[code]
        keep = group[i] != group[j]
        i, j, code = i[keep], j[keep], code[keep]
        d = np.bitwise_count(codes[i * count] ^ codes[code]).astype(np.int64)
        close = (d <= threshold) & (np.bitwise_count(tints[i * count] ^ tints[code]) <= TINT_THRESHOLD)
        for a, b, dist in zip(i[close].tolist(), j[close].tolist(), d[close].tolist(), strict=True):
            key = (min(a, b), max(a, b))
            if dist < best.get(key, threshold + 1):
                best[key] = dist
    return [(a, b, dist) for (a, b), dist in best.items()]


def _padded(hashes: tuple[int, ...], count: int) -> tuple[int, ...]:
    """A fingerprint with fewer windows (or no colour hashes) repeats its whole-image hash."""
    return (hashes + (hashes[0],) * count)[:count] if hashes else (0,) * count


class _BandIndex:
    """Multi-index hashing over `BANDS` 16-bit bands: each band sorted once, probed by every value
    within `threshold // BANDS` bits of the query's band."""

    def __init__(self, codes: np.ndarray, threshold: int):
        self.codes = codes
        radius = threshold // BANDS
        flips = [0]
        for r in range(1, radius + 1):
            flips += [sum(1 << b for b in bits) for bits in combinations(range(BAND_BITS), r)]
        self.flips = np.array(flips, dtype=np.int64)
        self.bands = []
        for band in range(BANDS):
            values = _band(codes, band)
            order = np.argsort(values, kind="stable")
            self.bands.append((values[order], order))

    def candidates(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query index, code index) pairs that agree within the radius on some band (may repeat)."""
        qs, cs = [], []
        for band, (values, order) in enumerate(self.bands):
            probes = _band(queries, band)[:, None] ^ self.flips[None, :]
            lo = np.searchsorted(values, probes, side="left").ravel()
            hi = np.searchsorted(values, probes, side="right").ravel()
            sizes = hi - lo
            if not sizes.any():
                continue
            query = np.repeat(np.repeat(np.arange(len(queries)), len(self.flips)), sizes)
            offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            qs.append(query)
            cs.append(order[np.repeat(lo, sizes) + offsets])
        if not qs:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(qs), np.concatenate(cs)


def _band(codes: np.ndarray, band: int) -> np.ndarray:
    return ((codes >> np.uint64(band * BAND_BITS)) & np.uint64((1 << BAND_BITS) - 1)).astype(np.int64)
