"""Fingerprints that find the same scene twice: exact copies and near-duplicates (re-encoded, shifted
by a few pixels, cropped by up to 10%), and a matcher that scales to tens of thousands of images.

A fingerprint holds the sha256 of the decoded pixels (exact copies, whatever the file format) and
64-bit DCT perceptual hashes (pHash: the signs of the lowest 8x8 DCT coefficients of a 32x32 grey
thumbnail against their median) of several windows of the image: the whole image first, then
windows covering 90% of the width and/or height at the corners, edge centres and centre. A crop
that keeps at least 90% of each side is close to one of these windows, so the whole-image and the
centre-window hashes of one image (`QUERIES`) are compared with every window hash of the other
(both ways). A single whole-image pHash is not robust to 10% crops (distance up to ~20 of 64, as for
unrelated scenes); the windows are.

Two images are near-duplicates when such a pair of hashes is within `THRESHOLD` bits, their colour
hashes agree and the two windows' thumbnails correlate (`verified`), which keeps out the chance hash
matches that millions of comparisons bring. The threshold and its measured rates are documented in
docs/datasets.md ("Leakage audit").

Matching uses multi-index hashing (Norouzi et al., 2012): each 64-bit hash is cut into 4 bands
of 16 bits; two hashes within `THRESHOLD` bits agree within `THRESHOLD // 4` bits on at
least one band, so only hashes found by probing those neighbourhoods are compared. It finds exactly
what an all-pairs comparison finds, without comparing all pairs.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

THRESHOLD = 10  # bits of 64 (distances are even); docs/datasets.md gives the rates measured at this value
BAND_WIDTHS = (16, 16, 16, 16)  # bits of each band (see `_BandIndex`)
THUMB = 128  # every image is first brought to THUMB x THUMB grey, then windows are cut from that
HASH_SIDE = 32
SMALL = 32  # side of the grey thumbnail kept to verify hash matches
MIN_CORRELATION = 0.8  # of the two matched windows' thumbnails, for a hash match to count
QUERY_CHUNK = 256  # images whose candidates are gathered at once (bounds the memory)
TINT_THRESHOLD = 24  # bits of 64 on the colour (red minus blue) hash of the same two windows
FLAT_TINT = 3.0  # below this spread of red minus blue (0..255) an image counts as grey: tint hash 0


def _windows() -> tuple[tuple[float, float, float, float], ...]:
    """(x0, y0, x1, y1) fractions: the whole image, then 90% windows in x, y or both."""
    spans = {1.0: (0.0,), 0.9: (0.0, 0.05, 0.1)}
    out = [(0.0, 0.0, 1.0, 1.0)]
    for sx, sy in ((0.9, 1.0), (1.0, 0.9), (0.9, 0.9)):
        out += [(x, y, round(x + sx, 6), round(y + sy, 6)) for y in spans[sy] for x in spans[sx]]
    return tuple(out)


WINDOWS = _windows()
# Compared with every window of the other image: the whole image, and its centre 90% (which leaves
# out a border of up to 5% that a shift filled with black or reflected pixels).
QUERIES = (0, WINDOWS.index((0.05, 0.05, 0.95, 0.95)))


@dataclass(frozen=True)
class Fingerprint:
    """`content`: sha256 of the decoded pixels; `hashes`: one pHash per window of `WINDOWS`, whole first."""

    content: str
    hashes: tuple[int, ...]
    tints: tuple[int, ...] = ()
    thumb: bytes = b""  # the whole image, grey, SMALL x SMALL uint8: what a hash match is verified on

    def as_text(self) -> str:
        codes = [",".join(f"{h:016x}" for h in codes) for codes in (self.hashes, self.tints)]
        return ":".join([self.content, *codes, base64.b64encode(self.thumb).decode()])

    @classmethod
    def from_text(cls, text: str) -> Fingerprint:
        content, hashes, tints, thumb = [*text.split(":"), "", "", ""][:4]
        codes = (tuple(int(h, 16) for h in part.split(",") if h) for part in (hashes, tints))
        return cls(content, *codes, base64.b64decode(thumb))


def fingerprint(image: np.ndarray) -> Fingerprint:
    """The fingerprint of an RGB (HxWx3) or grey (HxW) uint8 image."""
    pixels = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{pixels.shape}|{pixels.dtype}".encode())
    digest.update(pixels.data)  # no copy of a large image
    content = digest.hexdigest()
    colour = pixels if pixels.ndim == 2 else np.ascontiguousarray(pixels[..., :3])
    reduced = cv2.resize(colour, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)  # before any copy
    thumb = np.repeat(reduced[..., None], 3, axis=2) if reduced.ndim == 2 else reduced
    grey = thumb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    tint = thumb[..., 0] - thumb[..., 2]  # red minus blue: tells red marks from blue ones of one grey
    tinted = float(tint.std()) >= FLAT_TINT
    hashes, tints = [], []
    for x0, y0, x1, y1 in WINDOWS:
        rows, cols = slice(round(y0 * THUMB), round(y1 * THUMB)), slice(round(x0 * THUMB), round(x1 * THUMB))
        hashes.append(_phash(grey[rows, cols]))
        tints.append(_phash(tint[rows, cols]) if tinted else 0)
    small = cv2.resize(grey, (SMALL, SMALL), interpolation=cv2.INTER_AREA)
    thumb_bytes = np.clip(np.rint(small), 0, 255).astype(np.uint8).tobytes()
    return Fingerprint(content=content, hashes=tuple(hashes), tints=tuple(tints), thumb=thumb_bytes)


def _phash(window: np.ndarray) -> int:
    small = cv2.resize(np.ascontiguousarray(window), (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :9].ravel()[1:65]  # the 8x8 lowest frequencies, DC swapped for (0, 8)
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def distance(a: Fingerprint, b: Fingerprint) -> int:
    """0 for the same pixels, else the smallest Hamming distance between the whole-image or centre
    hash (`QUERIES`) of one image and a window hash of the other whose colour hashes agree and whose
    thumbnails correlate (`verified`); 64 when no window does."""
    if a.content == b.content:
        return 0
    count = len(WINDOWS)
    found = [
        (_padded(query.hashes, count)[q] ^ h).bit_count()
        for query, other in ((a, b), (b, a))
        for q in QUERIES
        for k, (h, t) in enumerate(zip(_padded(other.hashes, count), _padded(other.tints, count), strict=True))
        if _tints_agree(np.uint64(_padded(query.tints, count)[q]), np.uint64(t)) and verified(query, q, other, k)
    ]
    return min(found, default=64)


def verified(query: Fingerprint, q: int, other: Fingerprint, k: int) -> bool:
    """Do window `q` of `query` and window `k` of `other` show the same thing? The correlation of
    their thumbnails, cut to those windows, is at least `MIN_CORRELATION`. Chance hash matches
    between different scenes (likely among millions of comparisons) fail this; true ones pass.
    Fingerprints without thumbnails are not verified."""
    if not query.thumb or not other.thumb:
        return True
    x = _window_of(query.thumb, WINDOWS[q]).ravel()
    x = x - x.mean()
    x0, y0, x1, y1 = WINDOWS[k]
    for dx, dy in _NUDGES:  # the window grid lines up within 2.5%: look up to a thumbnail pixel around
        y = _window_of(other.thumb, (x0 + dx, y0 + dy, x1 + dx, y1 + dy)).ravel()
        y = y - y.mean()
        scale = float(np.sqrt((x * x).sum() * (y * y).sum()))
        if scale < 1e-6:  # a flat window: the same only when both are flat
            if np.abs(x).max() < 1 and np.abs(y).max() < 1:
                return True
        elif float((x * y).sum()) / scale >= MIN_CORRELATION:
            return True
    return False


_NUDGES = [(dx / SMALL, dy / SMALL) for dx, dy in itertools.product((0, -1, 1), repeat=2)]


def _window_of(thumb: bytes, window: tuple[float, float, float, float]) -> np.ndarray:
    image = np.frombuffer(thumb, dtype=np.uint8).reshape(SMALL, SMALL).astype(np.float32)
    x0, y0, x1, y1 = window
    scale = np.float32([[x1 - x0, 0, x0 * SMALL], [0, y1 - y0, y0 * SMALL]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    cut = cv2.warpAffine(image, scale, (SMALL, SMALL), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(cut, (0, 0), 1.0)  # a pixel of misalignment costs little correlation


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
        for i, j in itertools.combinations(same, 2):
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
    for start, q in itertools.product(range(0, len(prints), QUERY_CHUNK), QUERIES):
        queries = codes[start * count + q : (start + QUERY_CHUNK) * count : count]
        for query, code in index.candidates(queries):
            i, j = query + start, owner[code]
            keep = group[i] != group[j]
            i, j, code = i[keep], j[keep], code[keep]
            d = np.bitwise_count(codes[i * count + q] ^ codes[code]).astype(np.int64)
            close = (d <= threshold) & _tints_agree(tints[i * count + q], tints[code])
            for a, b, k, dist in zip(*(v[close].tolist() for v in (i, j, code % count, d)), strict=True):
                key = (min(a, b), max(a, b))
                if dist < best.get(key, threshold + 1) and verified(prints[a], q, prints[b], k):
                    best[key] = dist
    return [(a, b, dist) for (a, b), dist in best.items()]


def _tints_agree(a, b):
    """Colour hashes agree when one image is grey (0: too little colour to hash) or they are close."""
    return (a == 0) | (b == 0) | (np.bitwise_count(np.bitwise_xor(a, b)) <= TINT_THRESHOLD)


def _padded(hashes: tuple[int, ...], count: int) -> tuple[int, ...]:
    """A fingerprint with fewer windows (or no colour hashes) repeats its whole-image hash."""
    return (hashes + (hashes[0],) * count)[:count] if hashes else (0,) * count


class _BandIndex:
    """Multi-index hashing over the bands of `BAND_WIDTHS`: per band, the codes ordered by the band's
    value and where each value starts, probed by every value within `threshold // 4` bits of the
    query's band (137 values at the 10-bit threshold, meeting ~0.2% of the codes per band; at 12
    bits, 697 values and five times as many codes to compare: measured in bench/leakage.py)."""

    def __init__(self, codes: np.ndarray, threshold: int):
        radius = threshold // len(BAND_WIDTHS)
        self.bands = []
        for band, width in enumerate(BAND_WIDTHS):
            flips = [0]
            for r in range(1, radius + 1):
                flips += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), r)]
            values = _band(codes, band)
            starts = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(values, minlength=1 << width), out=starts[1:])
            self.bands.append((np.array(flips, dtype=np.int64), starts, np.argsort(values, kind="stable")))

    def candidates(self, queries: np.ndarray):
        """Per band, (query index, code index) pairs that agree within the radius on that band."""
        for band, (flips, starts, order) in enumerate(self.bands):
            probes = (_band(queries, band)[:, None] ^ flips[None, :]).ravel()
            lo, sizes = starts[probes], starts[probes + 1] - starts[probes]
            total = int(sizes.sum())
            if not total:
                continue
            query = np.repeat(np.arange(len(probes), dtype=np.int64) // len(flips), sizes)
            offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            yield query, order[np.repeat(lo, sizes) + offsets]


def _band(codes: np.ndarray, band: int) -> np.ndarray:
    shift, width = sum(BAND_WIDTHS[:band]), BAND_WIDTHS[band]
    return ((codes >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
