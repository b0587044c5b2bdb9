"""Leakage audit benchmark: how long matching takes for 10,000 pairs, and the near-duplicate rates.

Timing (default): `--pairs` procedural pairs (20,000 images of `--size` px: smooth random colour
fields with random blocks, each distinct), spread over train/val/test, plus `--planted` near-
duplicates put in another split (JPEG q75 re-encodes, shifts up to 8 px, crops up to 10%). Their
fingerprints are made first (not timed; the time per image is printed, as imports pay it), then
`inference.near_duplicates.find_matches` across the splits is timed for `--rounds` rounds: median,
min and max, with how many planted copies were found and how many other matches there were (each
one a false positive: the procedural images are all distinct). The database reads and the one
insert of the findings (`experiments.datasets.leakage.leakage_audit`) are not included.

Rates (`--rates`): `--scenes` synthetic scenes (`inference.synthetic`) against their JPEG q75
re-encodes, shifts of 1-8 px (a window moved over a larger render, a black border, a wrap-around)
and crops of 3-10% (sides, corners, one axis, resized or not), and every pair of distinct scenes:
the largest distance of a true copy, the false-negative count at the threshold, and the false
positives among the distinct pairs. These are the figures docs/datasets.md quotes.

Usage: nice -n 10 .venv/bin/python -m bench.leakage [--pairs 10000] [--rounds 3]
       nice -n 10 .venv/bin/python -m bench.leakage --rates [--scenes 60]
"""

import argparse
import io
import itertools
import statistics
import time

import cv2
import numpy as np
from PIL import Image

from inference import near_duplicates as nd

SPLITS = ("train", "val", "test")


def procedural(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = int(rng.integers(4, 16))
    field = cv2.resize(
        rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    for _ in range(int(rng.integers(3, 12))):
        x, y = (int(v) for v in rng.integers(0, size - 8, 2))
        w, h = (int(v) for v in rng.integers(4, size // 4, 2))
        field[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    return np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def variant(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A near-duplicate of `image`: a re-encode, a shift of up to 8 px, or a crop of up to 10%."""
    size = image.shape[0]
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return jpeg(image)
    if kind == 1:
        dx, dy = (int(v) for v in rng.integers(-8, 9, 2))
        return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size), borderMode=cv2.BORDER_REFLECT)
    cut = int(rng.integers(1, size // 10 + 1))
    left, top = (int(v) for v in rng.integers(0, cut + 1, 2))
    return image[top : top + size - cut, left : left + size - cut]


def timing(pairs: int, size: int, planted: int, rounds: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    prints, groups, originals = [], [], {}
    started = time.perf_counter()
    for index in range(pairs):
        for _role in "AB":
            image = procedural(rng, size)
            if len(originals) < planted and _role == "A":
                originals[len(prints)] = image
            prints.append(nd.fingerprint(image))
            groups.append(index % 3)
    copies = {}
    for original, image in originals.items():
        copies[len(prints)] = original
        prints.append(nd.fingerprint(variant(rng, image)))
        groups.append((groups[original] + 1) % 3)
    per_image = (time.perf_counter() - started) / len(prints)
    print(f"{pairs} pairs + {len(copies)} planted copies: {len(prints)} images of {size} px; "
          f"fingerprint {per_image * 1000:.2f} ms per image (not timed below)")  # fmt: skip
    seconds = []
    for round_ in range(rounds):
        started = time.perf_counter()
        matches = nd.find_matches(prints, groups=groups)
        seconds.append(time.perf_counter() - started)
        found = {(m.first, m.second) for m in matches}
        planted_found = sum((original, copy) in found for copy, original in copies.items())
        print(f"round {round_ + 1}: {seconds[-1]:.2f} s, {len(matches)} matches, "
              f"{planted_found}/{len(copies)} planted copies found, {len(matches) - planted_found} other matches")  # fmt: skip
    print(f"audit matching for {pairs} pairs: median {statistics.median(seconds):.2f} s "
          f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {rounds} rounds); threshold {nd.THRESHOLD} of 64 bits")  # fmt: skip


def rates(scenes: int) -> None:
    from inference.synthetic import CATEGORIES, generate_pair

    size, margin = 256, 16
    worst: dict[str, list[int]] = {}
    for index in range(scenes):
        big = generate_pair(index, CATEGORIES[index % 3], size=size + 2 * margin, seed=11).a
        base = big[margin : margin + size, margin : margin + size]
        for kind, image in _variants(big, base, margin, size):
            worst.setdefault(kind, []).append(nd.distance(nd.fingerprint(base), nd.fingerprint(image)))
    for kind, distances in worst.items():
        missed = sum(d > nd.THRESHOLD for d in distances)
        print(f"{kind:>12}: {len(distances)} copies, largest distance {max(distances)}, missed {missed}")
    total = sum(len(d) for d in worst.values())
    print(f"false negatives: {sum(d > nd.THRESHOLD for v in worst.values() for d in v)} of {total}")
    prints = [nd.fingerprint(generate_pair(i, CATEGORIES[i % len(CATEGORIES)], size=size, seed=9).a)
              for i in range(5 * scenes)]  # fmt: skip
    distances = [nd.distance(a, b) for a, b in itertools.combinations(prints, 2)]
    close = sum(d <= nd.THRESHOLD for d in distances)
    print(f"false positives: {close} of {len(distances)} pairs of distinct scenes")


def _variants(big, base, margin, size):
    yield "jpeg q75", jpeg(base)
    for shift in range(1, 9):
        for dx, dy in ((shift, 0), (0, shift), (shift, shift), (-shift, shift)):
            yield "shift", big[margin + dy : margin + dy + size, margin + dx : margin + dx + size]
        yield "black edge", cv2.warpAffine(base, np.float32([[1, 0, shift], [0, 1, -shift]]), (size, size))
        yield "wrap-around", np.roll(base, (shift, shift), axis=(0, 1))
    for fraction in (0.03, 0.06, 0.1):
        cut = int(size * fraction)
        for left, top in ((0, 0), (cut, cut), (cut // 2, cut // 2), (0, cut), (cut, 0)):
            yield "crop", base[top : top + size - cut, left : left + size - cut]
        yield "crop one axis", base[:, cut:]
        yield "crop+resize", jpeg(cv2.resize(base[cut:, cut:], (size, size)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--planted", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rates", action="store_true", help="measure the near-duplicate rates instead")
    parser.add_argument("--scenes", type=int, default=60)
    args = parser.parse_args()
    if args.rates:
        rates(args.scenes)
    else:
        timing(args.pairs, args.size, args.planted, args.rounds, args.seed)


if __name__ == "__main__":
    main()
