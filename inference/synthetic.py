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

_GROUND_PALETTE = np.array(
    [
        (86, 125, 70),  # grass
        (110, 140, 80),  # light grass
        (70, 100, 55),  # dark grass
        (140, 115, 85),  # soil
        (160, 135, 100),  # dry soil
        (120, 95, 70),  # wet soil
        (195, 180, 150),  # sand
        (150, 150, 100),  # dry grass
    ],
    dtype=np.float32,
)
_ROOF_PALETTE = np.array(
    [
        (170, 70, 55),  # red tiles
        (120, 120, 125),  # grey metal
        (200, 200, 195),  # white membrane
        (95, 75, 60),  # brown shingles
        (70, 90, 120),  # blue metal
        (150, 140, 120),  # concrete
        (60, 60, 65),  # tar
    ],
    dtype=np.float32,
)
_SHAPE_PALETTE = np.array(
    [
        (220, 60, 50),
        (240, 200, 60),
        (60, 110, 210),
        (235, 235, 235),
        (40, 170, 190),
        (200, 90, 190),
        (35, 35, 40),
    ],
    dtype=np.float32,
)
_SHADOW_FACTOR = 0.55


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


# --------------------------------------------------------------------------- scene objects


def _rect_polygon(cx: float, cy: float, half_w: float, half_h: float, angle: float) -> np.ndarray:
    box = cv2.boxPoints(((cx, cy), (2 * half_w, 2 * half_h), math.degrees(angle)))
    return box.astype(np.float32)


def _fill_mask(shape: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(p * 16).astype(np.int32) for p in polygons], 1, shift=4)
    return mask.astype(bool)


_GRAIN_TILE = 64


def _paint(
    img: np.ndarray,
    mask: np.ndarray,
    colour: np.ndarray,
    seed: int,
    grain: float,
    anchor,
) -> None:
    """Paint ``colour`` plus grain fixed to the object: a seeded tile repeated from ``anchor``.

    The grain depends on the pixel's offset from the anchor, not on the mask, so an object that
    gains an extension keeps the exact pixels of its unchanged part.
    """
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return
    tile = np.random.default_rng(seed).normal(0.0, grain, (_GRAIN_TILE, _GRAIN_TILE))
    ax, ay = round(float(anchor[0])), round(float(anchor[1]))
    noise = tile[(ys - ay) % _GRAIN_TILE, (xs - ax) % _GRAIN_TILE].astype(np.float32)
    img[ys, xs] = colour[None, :] + noise[:, None]


def _darken(img: np.ndarray, mask: np.ndarray) -> None:
    img[mask] *= _SHADOW_FACTOR


@dataclass(frozen=True)
class _Rect:
    cx: float
    cy: float
    half_w: float
    half_h: float
    angle: float

    def polygon(self) -> np.ndarray:
        return _rect_polygon(self.cx, self.cy, self.half_w, self.half_h, self.angle)

    def moved(self, cx: float, cy: float) -> _Rect:
        return _Rect(cx, cy, self.half_w, self.half_h, self.angle)


@dataclass(frozen=True)
class _Building:
    """Rooftop made of rectangular parts (an L-shape is two parts), casting a shadow."""

    parts: tuple[_Rect, ...]
    roof: np.ndarray
    gable: bool
    height: float
    texture_seed: int

    def draw(self, img: np.ndarray, sun: np.ndarray) -> None:
        shape = img.shape[:2]
        polygons = [part.polygon() for part in self.parts]
        footprint = _fill_mask(shape, polygons)
        shadow = _fill_mask(shape, [p + sun * self.height for p in polygons]) & ~footprint
        _darken(img, shadow)
        _paint(
            img,
            footprint,
            self.roof,
            self.texture_seed,
            4.0,
            (self.parts[0].cx, self.parts[0].cy),
        )
        for part, polygon in zip(self.parts, polygons, strict=True):
            self._shade_part(img, part, _fill_mask(shape, [polygon]))

    def _shade_part(self, img: np.ndarray, part: _Rect, mask: np.ndarray) -> None:
        ys, xs = np.nonzero(mask)
        if not len(xs):
            return
        if self.gable:
            # The ridge runs along the long side; the half facing away from the sun is darker.
            axis = part.angle + (0.0 if part.half_w >= part.half_h else math.pi / 2)
            normal = (-math.sin(axis), math.cos(axis))
            side = (xs - part.cx) * normal[0] + (ys - part.cy) * normal[1]
            img[ys[side > 0], xs[side > 0]] *= 0.78
            ridge = np.abs(side) < 1.0
            img[ys[ridge], xs[ridge]] *= 0.85
        else:
            eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            img[mask & ~eroded] *= 0.8

    def moved(self, dx: float, dy: float) -> _Building:
        parts = tuple(p.moved(p.cx + dx, p.cy + dy) for p in self.parts)
        return _Building(parts, self.roof, self.gable, self.height, self.texture_seed)

    def recoloured(self, roof: np.ndarray) -> _Building:
        return _Building(self.parts, roof, self.gable, self.height, self.texture_seed)


@dataclass(frozen=True)
class _Tree:
    cx: float
    cy: float
    radius: float
    colour: np.ndarray
    texture_seed: int

    def draw(self, img: np.ndarray, sun: np.ndarray) -> None:
        shape = img.shape[:2]
        canopy = self._disc(shape, self.cx, self.cy)
        shade = self._disc(shape, self.cx + sun[0] * self.radius, self.cy + sun[1] * self.radius)
        _darken(img, shade & ~canopy)
        _paint(img, canopy, self.colour, self.texture_seed, 9.0, (self.cx, self.cy))
        ys, xs = np.nonzero(canopy)
        falloff = np.hypot(xs - self.cx, ys - self.cy) / max(self.radius, 1.0)
        img[ys, xs] *= (1.0 - 0.3 * np.clip(falloff, 0, 1) ** 2)[:, None]

    def _disc(self, shape: tuple[int, int], cx: float, cy: float) -> np.ndarray:
        mask = np.zeros(shape, dtype=np.uint8)
        centre = (round(cx * 16), round(cy * 16))
        cv2.circle(mask, centre, round(self.radius * 16), 1, -1, shift=4)
        return mask.astype(bool)

    def moved(self, dx: float, dy: float) -> _Tree:
        return _Tree(self.cx + dx, self.cy + dy, self.radius, self.colour, self.texture_seed)

    def recoloured(self, colour: np.ndarray) -> _Tree:
        return _Tree(self.cx, self.cy, self.radius, colour, self.texture_seed)


@dataclass(frozen=True)
class _Shape:
    """A painted flat object (vehicle, container, pool, tarp) with a short shadow."""

    polygon: np.ndarray
    colour: np.ndarray
    texture_seed: int

    def draw(self, img: np.ndarray, sun: np.ndarray) -> None:
        shape = img.shape[:2]
        footprint = _fill_mask(shape, [self.polygon])
        _darken(img, _fill_mask(shape, [self.polygon + sun * 2.0]) & ~footprint)
        _paint(
            img,
            footprint,
            self.colour,
            self.texture_seed,
            3.0,
            self.polygon.mean(axis=0),
        )

    def moved(self, dx: float, dy: float) -> _Shape:
        offset = np.array([dx, dy], dtype=np.float32)
        return _Shape(self.polygon + offset, self.colour, self.texture_seed)

    def recoloured(self, colour: np.ndarray) -> _Shape:
        return _Shape(self.polygon, colour, self.texture_seed)


_Object = _Building | _Tree | _Shape


# --------------------------------------------------------------------------- scene


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random ``cells`` x ``cells`` grid upsampled bicubically."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _fractal_noise(rng: np.random.Generator, size: int, base_cells: int, octaves: int) -> np.ndarray:
    total = np.zeros((size, size), dtype=np.float32)
    weight_sum = 0.0
    for octave in range(octaves):
        weight = 0.5**octave
        total += weight * _value_noise(rng, size, min(base_cells * 2**octave, size // 2))
        weight_sum += weight
    return total / weight_sum


@dataclass
class _Scene:
    """Background shared by A and B plus the unchanged objects on it."""

    size: int
    ground: np.ndarray
    objects: list[_Object]
    sun: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, size: int) -> _Scene:
        sun_angle = rng.uniform(0, 2 * math.pi)
        sun = np.array([math.cos(sun_angle), math.sin(sun_angle)], dtype=np.float32)
        ground = _ground(rng, size)
        _draw_roads(rng, ground)
        objects: list[_Object] = []
        objects += [_random_building(rng, size, *rng.uniform(0, size, 2)) for _ in range(rng.integers(2, 7))]
        objects += [_random_tree(rng, size, *rng.uniform(0, size, 2)) for _ in range(rng.integers(3, 13))]
        return cls(size=size, ground=ground, objects=objects, sun=sun)

    def render(self, extra: Sequence[_Object]) -> np.ndarray:
        img = self.ground.copy()
        for obj in [*self.objects, *extra]:
            obj.draw(img, self.sun)
        return img


def _ground(rng: np.random.Generator, size: int) -> np.ndarray:
    colours = _GROUND_PALETTE[rng.choice(len(_GROUND_PALETTE), size=3, replace=False)]
    fields = _fractal_noise(rng, size, base_cells=int(rng.integers(2, 5)), octaves=3)
    first, second = np.quantile(fields, [rng.uniform(0.25, 0.5), rng.uniform(0.6, 0.85)])
    blend_ab = np.clip((fields - first) / 0.04 + 0.5, 0, 1)[..., None]
    blend_bc = np.clip((fields - second) / 0.04 + 0.5, 0, 1)[..., None]
    ground = colours[0] * (1 - blend_ab) + colours[1] * blend_ab
    ground = ground * (1 - blend_bc) + colours[2] * blend_bc
    detail = _fractal_noise(rng, size, base_cells=max(size // 24, 4), octaves=3) - 0.5
    ground = ground * (1.0 + 0.35 * detail[..., None])
    if rng.random() < 0.5:
        ground = ground * (1.0 + 0.08 * _crop_rows(rng, size)[..., None])
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    gx, gy = rng.uniform(-12, 12, 2)
    ground = ground + (gx * ramp[None, :] + gy * ramp[:, None])[..., None]
    ground += rng.normal(0, 3.0, ground.shape).astype(np.float32)
    return ground.astype(np.float32)


def _crop_rows(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sinusoidal furrows, as on ploughed fields."""
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(5, 12)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
    return np.sin(phase).astype(np.float32)


def _draw_roads(rng: np.random.Generator, img: np.ndarray) -> None:
    size = img.shape[0]
    for _ in range(rng.integers(0, 3)):
        mask = np.zeros((size, size), dtype=np.uint8)
        start, end = _random_line(rng, size)
        width = int(size * rng.uniform(0.03, 0.06))
        cv2.line(mask, start, end, 1, width)
        tone = np.float32(rng.uniform(85, 140))
        road = mask.astype(bool)
        img[road] = tone + rng.normal(0, 3.0, (int(road.sum()), 1)).astype(np.float32)
        if rng.random() < 0.6:
            line = np.zeros_like(mask)
            cv2.line(line, start, end, 1, max(1, width // 12))
            img[line.astype(bool)] = 215.0


def _random_line(rng: np.random.Generator, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    if rng.random() < 0.5:
        return (0, int(rng.integers(0, size))), (size - 1, int(rng.integers(0, size)))
    return (int(rng.integers(0, size)), 0), (int(rng.integers(0, size)), size - 1)


def _random_building(rng: np.random.Generator, scale: float, cx: float, cy: float, extent: float = 0.07) -> _Building:
    half_w = scale * extent * rng.uniform(0.6, 1.4)
    half_h = half_w * rng.uniform(0.5, 1.0)
    rect = _Rect(
        float(cx),
        float(cy),
        float(half_w),
        float(half_h),
        float(rng.uniform(0, math.pi)),
    )
    roof = _ROOF_PALETTE[rng.integers(len(_ROOF_PALETTE))] * rng.uniform(0.85, 1.15)
    height = float(min(half_w, half_h) * rng.uniform(0.3, 0.7))
    return _Building(
        (rect,),
        roof.astype(np.float32),
        bool(rng.random() < 0.5),
        height,
        int(rng.integers(2**31)),
    )


def _random_tree(rng: np.random.Generator, scale: float, cx: float, cy: float) -> _Tree:
    colour = np.array([45, 75, 40], dtype=np.float32) * rng.uniform(0.8, 1.25, 3).astype(np.float32)
    radius = float(scale * rng.uniform(0.012, 0.03))
    return _Tree(float(cx), float(cy), radius, colour, int(rng.integers(2**31)))


def _random_shape(rng: np.random.Generator, scale: float, cx: float, cy: float) -> _Shape:
    radius = scale * rng.uniform(0.05, 0.1)
    sides = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, sides)) if sides < 8 else np.linspace(0, 2 * math.pi, 24)
    radii = radius * rng.uniform(0.7, 1.0, len(angles))
    polygon = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    colour = _SHAPE_PALETTE[rng.integers(len(_SHAPE_PALETTE))]
    return _Shape(polygon.astype(np.float32), colour.copy(), int(rng.integers(2**31)))


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
