"""Procedural synthetic change-detection benchmark.

Each pair is an aerial-looking scene (textured ground, roads, buildings with roofs and shadows,
trees, painted shapes) rendered twice: A ("before") and B ("after"). The two renders share every
random choice except the change that the pair's category describes, so the label is exact: it is
the set of pixels whose *clean* content differs between the renders, taken before the nuisance
effects (illumination, sensor noise, compression) that a detector should ignore.

Scenes are rendered on a canvas larger than the output and cropped, so the ``misaligned`` category
can warp B with a viewpoint homography and still show real content at its borders. Labels always
live in B's pixel frame: for ``misaligned`` the change mask is warped with the same homography.

Everything is driven by ``np.random.Generator`` instances seeded from ``(seed, index, category)``,
so the same seed gives byte-identical pairs and a pair does not depend on how many were generated.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inference.augment import random_viewpoint_homography
from inference.synthetic_scene import (
    _Building,
    _Object,
    _random_building,
    _random_shape,
    _Rect,
    _Scene,
    _Tree,
    _value_noise,
)

CATEGORIES: tuple[str, ...] = (
    "object_added",
    "object_removed",
    "object_moved",
    "color_change",
    "shape_change",
    "illumination_only",
    "noise_and_compression",
    "misaligned",
)
NO_CHANGE_CATEGORIES: frozenset[str] = frozenset({"illumination_only", "noise_and_compression"})
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Within a category the j-th pair takes split _SPLIT_CYCLE[j % 20]: 70% train, 15% val, 15% test,
# with val and test appearing early so that small benchmarks still contain every split.
_SPLIT_CYCLE: tuple[str, ...] = (
    "train", "train", "val", "train", "test", "train", "train", "train", "val", "train",
    "train", "test", "train", "train", "val", "train", "train", "test", "train", "train",
)  # fmt: skip

# Border added on every side of the output before rendering, as a fraction of the output size.
# It must exceed the largest displacement of an output corner under the misalignment homography.
_MARGIN_FRACTION = 0.25
# A clean-render difference above this (0..255 scale) marks a pixel as changed.
_CHANGE_EPSILON = 1.0


@dataclass(frozen=True, eq=False)
class SyntheticPair:
    """One benchmark pair. ``label`` is bool HxW in B's frame; ``homography`` maps A to B."""

    name: str
    category: str
    split: str
    a: np.ndarray
    b: np.ndarray
    label: np.ndarray
    homography: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def has_change(self) -> bool:
        return self.category not in NO_CHANGE_CATEGORIES


def pair_name(seed: int, index: int, category: str) -> str:
    return f"synthetic-{seed}-{index:05d}-{category}"


def split_for(occurrence: int) -> str:
    """Split of the ``occurrence``-th pair (0-based) of a category."""
    return _SPLIT_CYCLE[occurrence % len(_SPLIT_CYCLE)]


def generate_benchmark(
    pairs: int,
    size: int = 256,
    seed: int = 0,
    categories: Sequence[str] | None = None,
) -> list[SyntheticPair]:
    """Generate ``pairs`` pairs of ``size`` x ``size`` pixels, cycling through the categories.

    Pair ``i`` has category ``categories[i % len(categories)]``, so every category gets the same
    count (within one). The result is deterministic for ``(pairs, size, seed, categories)``.
    """
    chosen = _validate_categories(categories)
    if pairs < 0:
        raise ValueError(f"pairs must be >= 0, got {pairs}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    return [
        generate_pair(
            index,
            chosen[index % len(chosen)],
            size=size,
            seed=seed,
            split=split_for(index // len(chosen)),
        )
        for index in range(pairs)
    ]


def generate_pair(index: int, category: str, *, size: int = 256, seed: int = 0, split: str = "train") -> SyntheticPair:
    """Render one pair; see the module docstring for how labels are defined."""
    _validate_categories([category])
    rng = np.random.default_rng([seed, index, CATEGORIES.index(category)])
    margin = round(size * _MARGIN_FRACTION)
    scene = _Scene.random(rng, size + 2 * margin)
    placement = _Placement(centre=scene.size / 2, reach=size * (0.28 if category == "misaligned" else 0.36))
    objects_a, objects_b = _change_for(category, rng, placement, size)

    clean_a = scene.render(objects_a)
    clean_b = scene.render(objects_b)
    changed = _changed_pixels(clean_a, clean_b)

    homography = np.eye(3)
    if category == "misaligned":
        homography = _viewpoint_homography(rng, size)
        a, b, label = _crop_misaligned(clean_a, clean_b, changed, homography, margin, size)
    else:
        window = (slice(margin, margin + size), slice(margin, margin + size))
        a, b, label = clean_a[window], clean_b[window], changed[window]

    a, b = _apply_nuisance(category, rng, a, b)
    return SyntheticPair(
        name=pair_name(seed, index, category),
        category=category,
        split=split,
        a=a,
        b=b,
        label=np.ascontiguousarray(label),
        homography=homography,
    )


def export_levir(pairs: Iterable[SyntheticPair], out_dir: str | Path) -> Path:
    """Write pairs in LEVIR-CD layout.

    ``A/ B/ label/`` hold ``<name>.png`` (labels 0/255), ``list/<split>.txt`` the file names per
    split, and ``categories.csv`` the columns ``name, category, split``.
    """
    root = Path(out_dir)
    for sub in ("A", "B", "label", "list"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {split: [] for split in SPLITS}
    rows = []
    for pair in pairs:
        filename = f"{pair.name}.png"
        Image.fromarray(pair.a).save(root / "A" / filename)
        Image.fromarray(pair.b).save(root / "B" / filename)
        Image.fromarray(pair.label.astype(np.uint8) * 255).save(root / "label" / filename)
        lists.setdefault(pair.split, []).append(filename)
        rows.append((pair.name, pair.category, pair.split))
    for split, names in lists.items():
        (root / "list" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    with open(root / "categories.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("name", "category", "split"))
        writer.writerows(rows)
    return root


def _changed_pixels(clean_a: np.ndarray, clean_b: np.ndarray) -> np.ndarray:
    """Pixels whose clean content differs; a 3x3 closing fills pinholes where two textures agree."""
    changed = (np.abs(clean_a - clean_b).max(axis=2) > _CHANGE_EPSILON).astype(np.uint8)
    return cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)


def _validate_categories(categories: Sequence[str] | None) -> tuple[str, ...]:
    if categories is None:
        return CATEGORIES
    chosen = tuple(categories)
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown or not chosen:
        raise ValueError(f"unknown or empty categories {unknown or chosen!r}; choose from {', '.join(CATEGORIES)}")
    return chosen


# --------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class _Placement:
    """Where change objects may go: a square of half-side ``reach`` around ``centre``."""

    centre: float
    reach: float

    def spots(self, rng: np.random.Generator, count: int, spacing: float) -> list[tuple[float, float]]:
        """``count`` points, kept ``spacing`` apart when the rejection sampling allows it."""
        points: list[tuple[float, float]] = []
        for _ in range(count * 20):
            if len(points) == count:
                break
            x, y = self.centre + rng.uniform(-self.reach, self.reach, 2)
            if all(math.hypot(x - px, y - py) >= spacing for px, py in points):
                points.append((float(x), float(y)))
        while len(points) < count:
            points.append(tuple(self.centre + rng.uniform(-self.reach, self.reach, 2)))
        return points


def _random_object(rng: np.random.Generator, size: int, x: float, y: float) -> _Object:
    kind = rng.choice(3, p=[0.55, 0.2, 0.25])
    if kind == 0:
        return _random_building(rng, size, x, y, extent=0.09)
    if kind == 1:
        return _Tree(x, y, float(size * rng.uniform(0.04, 0.07)), *_tree_style(rng))
    return _random_shape(rng, size, x, y)


def _tree_style(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    colour = np.array([45, 80, 40], dtype=np.float32) * rng.uniform(0.8, 1.25, 3).astype(np.float32)
    return colour, int(rng.integers(2**31))


def _different_colour(rng: np.random.Generator, old: np.ndarray) -> np.ndarray:
    """A colour at least 90 away from ``old`` (L1 over channels, 0..255 scale)."""
    for _ in range(50):
        candidate = rng.uniform(20, 235, 3).astype(np.float32)
        if np.abs(candidate - old).sum() >= 90:
            return candidate
    return (255.0 - old).astype(np.float32)


def _change_for(
    category: str, rng: np.random.Generator, placement: _Placement, size: int
) -> tuple[list[_Object], list[_Object]]:
    """Objects present only in A and only in B for the category (empty for no-change ones)."""
    if category in NO_CHANGE_CATEGORIES:
        return [], []
    if category == "misaligned":
        category = str(rng.choice(CATEGORIES[:5]))
    count = int(rng.integers(1, 4))
    spots = placement.spots(rng, count, spacing=size * 0.22)
    objects = [_random_object(rng, size, x, y) for x, y in spots]
    if category == "object_added":
        return [], objects
    if category == "object_removed":
        return objects, []
    if category == "object_moved":
        return objects, [_moved_away(rng, obj, placement, size) for obj in objects]
    if category == "color_change":
        return objects, [obj.recoloured(_different_colour(rng, _colour_of(obj))) for obj in objects]
    buildings = [_random_building(rng, size, x, y, extent=0.08) for x, y in spots]
    return _shape_changes(rng, buildings)


def _colour_of(obj: _Object) -> np.ndarray:
    return obj.roof if isinstance(obj, _Building) else obj.colour


def _centre_of(obj: _Object) -> np.ndarray:
    if isinstance(obj, _Building):
        return np.array([obj.parts[0].cx, obj.parts[0].cy])
    if isinstance(obj, _Tree):
        return np.array([obj.cx, obj.cy])
    return obj.polygon.mean(axis=0)


def _moved_away(rng: np.random.Generator, obj: _Object, placement: _Placement, size: int) -> _Object:
    """The same object displaced by 18-35% of the output size, staying inside the placement."""
    centre = _centre_of(obj)
    for _ in range(30):
        angle = rng.uniform(0, 2 * math.pi)
        distance = size * rng.uniform(0.18, 0.35)
        target = centre + distance * np.array([math.cos(angle), math.sin(angle)])
        if np.all(np.abs(target - placement.centre) <= placement.reach):
            break
    else:
        target = 2 * placement.centre - centre  # mirror through the centre
    dx, dy = (target - centre).tolist()
    return obj.moved(dx, dy)


def _shape_changes(rng: np.random.Generator, buildings: list[_Building]) -> tuple[list[_Object], list[_Object]]:
    """Each building gains an extension (L-shape) or loses one (partial demolition)."""
    before: list[_Object] = []
    after: list[_Object] = []
    for building in buildings:
        extended = _with_extension(rng, building)
        if rng.random() < 0.5:
            before.append(building)
            after.append(extended)
        else:
            before.append(extended)
            after.append(building)
    return before, after


def _with_extension(rng: np.random.Generator, building: _Building) -> _Building:
    base = building.parts[0]
    cos_a, sin_a = math.cos(base.angle), math.sin(base.angle)
    along_w = rng.random() < 0.5
    sign = 1 if rng.random() < 0.5 else -1
    if along_w:  # extend past the short edge, across part of the long one -> L-shape
        ext_hw = base.half_w * rng.uniform(0.4, 0.7)
        ext_hh = base.half_h * rng.uniform(0.45, 0.8)
        offset_x = sign * (base.half_w + ext_hw)
        offset_y = (base.half_h - ext_hh) * (1 if rng.random() < 0.5 else -1)
    else:
        ext_hw = base.half_w * rng.uniform(0.35, 0.6)
        ext_hh = base.half_h * rng.uniform(0.5, 0.9)
        offset_x = (base.half_w - ext_hw) * (1 if rng.random() < 0.5 else -1)
        offset_y = sign * (base.half_h + ext_hh)
    cx = base.cx + offset_x * cos_a - offset_y * sin_a
    cy = base.cy + offset_x * sin_a + offset_y * cos_a
    extension = _Rect(cx, cy, ext_hw, ext_hh, base.angle)
    return _Building(
        (base, extension),
        building.roof,
        building.gable,
        building.height,
        building.texture_seed,
    )


# --------------------------------------------------------------------------- viewpoint


def _viewpoint_homography(rng: np.random.Generator, size: int) -> np.ndarray:
    """A->B homography: small rotation, scale, shear, perspective and a 2-8% shift."""
    return random_viewpoint_homography(rng, size)


def _crop_misaligned(
    clean_a: np.ndarray,
    clean_b: np.ndarray,
    changed: np.ndarray,
    homography: np.ndarray,
    margin: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop A straight; view B's canvas through the homography, so B's borders are real content."""
    window = (slice(margin, margin + size), slice(margin, margin + size))
    from_canvas = homography @ np.array([[1, 0, -margin], [0, 1, -margin], [0, 0, 1]], float)
    warp = {"dsize": (size, size), "borderMode": cv2.BORDER_REFLECT}
    b = cv2.warpPerspective(clean_b, from_canvas, flags=cv2.INTER_LINEAR, **warp)
    mask = cv2.warpPerspective(changed.astype(np.float32), from_canvas, flags=cv2.INTER_LINEAR, **warp)
    return clean_a[window], b, mask >= 0.5


# --------------------------------------------------------------------------- nuisance


def _photometric(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Global gain/bias/gamma/colour cast scaled by ``strength`` (0 = none, 1 = strong)."""
    gamma = math.exp(rng.uniform(-0.35, 0.35) * strength)
    gain = 1.0 + rng.uniform(-0.35, 0.35) * strength
    cast = 1.0 + rng.uniform(-0.12, 0.12, 3).astype(np.float32) * strength
    bias = rng.uniform(-20, 20) * strength
    out = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    return (out * gain * cast + bias).astype(np.float32)


def _soft_shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A large smooth darkening, like a cloud shadow or a low-sun gradient."""
    size = img.shape[0]
    field_ = _value_noise(rng, size, int(rng.integers(1, 3)))
    depth = rng.uniform(0.15, 0.35)
    return img * (1.0 - depth * field_)[..., None]


def _degrade(img: np.ndarray, rng: np.random.Generator, sigma: float, blur: float, quality: int) -> np.ndarray:
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    quantised = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if quality < 100:
        bgr = cv2.cvtColor(quantised, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            quantised = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return quantised


def _apply_nuisance(
    category: str, rng: np.random.Generator, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Acquisition differences for every pair (as between two real acquisitions, illumination
    and season differ), strongest for the no-change categories."""
    a = _photometric(a, rng, strength=rng.uniform(0.0, 0.5))
    illumination_only = category == "illumination_only"
    b = _photometric(b, rng, strength=rng.uniform(0.7, 1.0) if illumination_only else rng.uniform(0.0, 0.7))
    if rng.random() < (0.7 if illumination_only else 0.25):
        b = _soft_shadow(b, rng)
    a_out = _degrade(a, rng, sigma=rng.uniform(0.5, 2.5), blur=0.0, quality=100)
    if category == "noise_and_compression":
        b_out = _degrade(
            b,
            rng,
            sigma=rng.uniform(6.0, 15.0),
            blur=rng.uniform(0.6, 1.5),
            quality=int(rng.integers(10, 36)),
        )
    else:
        b_out = _degrade(b, rng, sigma=rng.uniform(0.5, 2.5), blur=0.0, quality=100)
    return a_out, b_out
