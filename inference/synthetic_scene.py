"""The scenes of the synthetic benchmark (`inference.synthetic`): textured ground, roads, buildings
with roofs and shadows, trees and painted shapes, as objects that render themselves onto a canvas,
and the random draws that make them. Every draw takes an ``np.random.Generator``, so a scene is
determined by its generator's seed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

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
