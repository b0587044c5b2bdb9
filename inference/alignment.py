"""Co-registration of image A ("before") onto image B's pixel frame.

The method follows the thesis: SIFT keypoints on grayscale images, FLANN kd-tree matching, Lowe's
ratio test (0.7), a RANSAC homography (5 px), and A warped to B's size with
``cv2.warpPerspective``. If SIFT cannot produce a trustworthy homography, ORB with a brute-force
Hamming matcher is tried; if that fails too, A is only resized to B's size and ``ok`` is False.
Alignment never raises on images that are flat or featureless.

Coordinates are OpenCV pixel indices (the centre of pixel ``(x, y)`` is at ``(x, y)``); the
homography maps A's coordinates to B's. Large images are matched on a downscaled copy (longest
side ``max_side``) and the homography is scaled back to full resolution.

A homography is trusted when it has at least :data:`MIN_INLIERS` inliers and either

- it moves A's corners by at most :data:`IDENTITY_TOLERANCE_PX` from plain resizing, or plain
  resizing already maps at least :data:`MIN_INLIERS` matches, and at least
  :data:`IDENTITY_PREFERENCE` times as many as the homography's inliers, to within ``ransac_px``
  (the simpler model explains the matches about as well; an 8-parameter homography fitted to a
  few clustered matches extrapolates badly: on LEVIR-CD ``test_12`` 22 inliers with 1-6 px
  offsets gave an 8 px zoom at the corners). The pair is then already co-registered: A is only
  resized (no resampling blur), ``ok`` is True, and the reported homography, inliers and
  reprojection error are those of the resize actually applied; or
- it passes the geometry checks: inlier ratio at least :data:`MIN_INLIER_RATIO`, A's warped
  outline is a convex, non-mirrored quadrilateral, the perspective factor varies by at most
  :data:`MAX_PERSPECTIVE_SPREAD` across A, the outline's area is within a factor of
  :data:`MAX_AREA_CHANGE` of B's area, and it covers at least :data:`MIN_OVERLAP` of B; and
  finally the warp must match B's structure at least as well as plain resizing does (normalised
  cross-correlation of gradient magnitudes over the covered part of B). This last check catches
  chance RANSAC consensus: on the co-registered LEVIR-CD tile ``test_7`` ORB's homography lowers
  that correlation from 0.13 to 0.06.

``ransac_px`` is in B's full-resolution pixels; when matching on a downscaled copy the RANSAC
threshold is scaled with it (but kept at least 1 px of the copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.numbers import finite_or_none

MIN_INLIERS = 10
MIN_INLIER_RATIO = 0.25
IDENTITY_TOLERANCE_PX = 0.5
IDENTITY_PREFERENCE = 0.8
MAX_PERSPECTIVE_SPREAD = 2.0
MAX_AREA_CHANGE = 16.0
MIN_OVERLAP = 0.1
DEFAULT_MAX_SIDE = 1024
MAX_FEATURES = 8000
_FLANN_INDEX_KDTREE = 1


@dataclass
class Alignment:
    """Result of :func:`align_pair`. ``warped_a`` and ``valid_mask`` have B's height and width.

    ``homography``, ``inliers``, ``inlier_ratio`` and ``reprojection_error`` describe the warp
    actually applied (the plain resize when the pair was found co-registered);
    ``corner_shift_px`` is how far the *estimated* homography moves A's corners away from plain
    resizing (NaN when nothing was estimated). ``notes`` say why methods were rejected.
    """

    warped_a: np.ndarray
    homography: np.ndarray
    method: str
    matches: int
    inliers: int
    inlier_ratio: float
    reprojection_error: float
    valid_mask: np.ndarray
    ok: bool
    corner_shift_px: float = math.nan
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-safe summary: numbers, strings and the homography as nested lists (NaN -> None)."""
        return {
            "method": self.method,
            "ok": self.ok,
            "matches": self.matches,
            "inliers": self.inliers,
            "inlier_ratio": finite_or_none(self.inlier_ratio),
            "reprojection_error": finite_or_none(self.reprojection_error),
            "corner_shift_px": finite_or_none(self.corner_shift_px),
            "valid_fraction": float(self.valid_mask.mean()) if self.valid_mask.size else 0.0,
            "homography": [[float(v) for v in row] for row in self.homography],
            "notes": list(self.notes),
        }


@dataclass
class _Estimate:
    """A candidate homography from one feature method, in full-resolution coordinates."""

    method: str
    homography: np.ndarray | None
    matches: int
    inliers: int
    reprojection_error: float
    note: str = ""
    identity_inliers: int = 0  # matches that plain resizing already maps within ransac_px
    identity_error: float = math.nan  # their mean distance (px)

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0


def align_pair(
    a: np.ndarray,
    b: np.ndarray,
    *,
    ratio: float = 0.7,
    ransac_px: float = 5.0,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> Alignment:
    """Warp ``a`` onto ``b``'s frame (see the module docstring for the rules).

    ``a`` and ``b`` are ``uint8`` HxWx3 (or HxW) arrays and may differ in size. ``ransac_px`` is
    measured in B's full-resolution pixels.
    """
    resize = resize_homography(a.shape, b.shape)
    work_a = _working_gray(a, max_side)
    work_b = _working_gray(b, max_side)
    notes = []
    for method in ("sift", "orb"):
        estimate = _estimate(method, work_a, work_b, ratio=ratio, ransac_px=ransac_px)
        verdict = _judge(estimate, work_a, work_b, resize)
        if verdict == "identity":
            return _resized_result(a, b, resize, estimate, notes)
        if verdict == "accept":
            return _warped_result(a, b, estimate, resize, notes)
        notes.append(f"{method}: {verdict}")
    return _fallback_result(a, b, resize, notes)


def resize_homography(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> np.ndarray:
    """The homography that ``cv2.resize`` applies when resizing A to B's size."""
    scale_x = b_shape[1] / a_shape[1]
    scale_y = b_shape[0] / a_shape[0]
    return _scaling(scale_x, scale_y)


def corner_shift(h1: np.ndarray, h2: np.ndarray, a_shape: tuple[int, ...]) -> float:
    """Largest distance (px) between where ``h1`` and ``h2`` send A's four corners."""
    corners = _corners(a_shape)
    return float(np.max(np.linalg.norm(_project(h1, corners) - _project(h2, corners), axis=1)))


def _scaling(scale_x: float, scale_y: float) -> np.ndarray:
    """Pixel-centre scaling as done by ``cv2.resize``: ``x' = (x + 0.5) * s - 0.5``."""
    return np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0.0, 0.0, 1.0]])


def _estimate(
    method: str, work_a: _WorkingImage, work_b: _WorkingImage, *, ratio: float, ransac_px: float
) -> _Estimate:
    scale_a, scale_b = work_a.scaling, work_b.scaling
    try:
        src, dst = _matched_points(method, work_a.gray, work_b.gray, ratio)
    except cv2.error as exc:  # e.g. FLANN on too few or degenerate descriptors
        return _Estimate(method, None, 0, 0, math.nan, f"matching failed ({getattr(exc, 'err', '') or exc})")
    if len(src) < 4:
        return _Estimate(method, None, len(src), 0, math.nan, f"{len(src)} matches")
    threshold = max(ransac_px * min(scale_b[0, 0], scale_b[1, 1]), 1.0)
    h_work, inlier_flags = cv2.findHomography(src, dst, cv2.RANSAC, threshold)
    if h_work is None:
        return _Estimate(method, None, len(src), 0, math.nan, "RANSAC found no homography")
    homography = np.linalg.inv(scale_b) @ h_work @ scale_a
    homography /= homography[2, 2]
    inliers = inlier_flags.ravel().astype(bool)
    src_full = _project(np.linalg.inv(scale_a), src)
    dst_full = _project(np.linalg.inv(scale_b), dst)
    error = float(np.mean(_distances(homography, src_full[inliers], dst_full[inliers])))
    resize = resize_homography(work_a.full_shape, work_b.full_shape)
    identity_distances = _distances(resize, src_full, dst_full)
    agreeing = identity_distances <= ransac_px
    return _Estimate(
        method,
        homography,
        len(src),
        int(inliers.sum()),
        error,
        identity_inliers=int(agreeing.sum()),
        identity_error=float(identity_distances[agreeing].mean()) if agreeing.any() else math.nan,
    )


def _distances(homography: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(_project(homography, src) - dst, axis=1)


@dataclass
class _WorkingImage:
    """Grayscale copy used for matching; ``scaling`` maps full-resolution pixels onto it."""

    gray: np.ndarray
    scaling: np.ndarray
    full_shape: tuple[int, ...]


def _working_gray(image: np.ndarray, max_side: int | None) -> _WorkingImage:
    """Grayscale copy, downscaled so that its longest side is at most ``max_side``."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    if max_side is None or max(height, width) <= max_side:
        return _WorkingImage(gray, np.eye(3), image.shape)
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return _WorkingImage(small, _scaling(size[0] / width, size[1] / height), image.shape)


def _matched_points(method: str, gray_a: np.ndarray, gray_b: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint coordinates of ratio-test matches, as float32 Nx1x2 arrays (A, B)."""
    if method == "sift":
        detector = cv2.SIFT_create(nfeatures=MAX_FEATURES)
        matcher = cv2.FlannBasedMatcher({"algorithm": _FLANN_INDEX_KDTREE, "trees": 5}, {"checks": 50})
    else:
        detector = cv2.ORB_create(nfeatures=MAX_FEATURES)
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    keys_a, desc_a = detector.detectAndCompute(gray_a, None)
    keys_b, desc_b = detector.detectAndCompute(gray_b, None)
    empty = np.empty((0, 1, 2), np.float32)
    if desc_a is None or desc_b is None or len(keys_a) < 2 or len(keys_b) < 2:
        return empty, empty
    pairs = matcher.knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if not good:
        return empty, empty
    src = np.float32([keys_a[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([keys_b[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    return src, dst


def _judge(estimate: _Estimate, work_a: _WorkingImage, work_b: _WorkingImage, resize: np.ndarray) -> str:
    """``"identity"``, ``"accept"``, or the reason the estimate is rejected."""
    a_shape, b_shape = work_a.full_shape, work_b.full_shape
    if estimate.homography is None:
        return estimate.note
    if estimate.inliers < MIN_INLIERS:
        return f"{estimate.inliers} inliers < {MIN_INLIERS}"
    if corner_shift(estimate.homography, resize, a_shape) <= IDENTITY_TOLERANCE_PX:
        return "identity"
    if estimate.identity_inliers >= MIN_INLIERS and estimate.identity_inliers >= IDENTITY_PREFERENCE * estimate.inliers:
        return "identity"
    if estimate.inlier_ratio < MIN_INLIER_RATIO:
        return f"inlier ratio {estimate.inlier_ratio:.2f} < {MIN_INLIER_RATIO}"
    problem = _geometry_problem(estimate.homography, a_shape, b_shape)
    return problem or _structure_problem(estimate.homography, resize, work_a, work_b) or "accept"


def _structure_problem(
    homography: np.ndarray, resize: np.ndarray, work_a: _WorkingImage, work_b: _WorkingImage
) -> str | None:
    """Reject a warp that matches B's gradients worse than plain resizing does."""
    to_work = [work_b.scaling @ h @ np.linalg.inv(work_a.scaling) for h in (homography, resize)]
    size = (work_b.gray.shape[1], work_b.gray.shape[0])
    covered = _coverage(to_work[0], work_a.gray.shape, work_b.gray.shape)
    edges_a, edges_b = _gradient_magnitude(work_a.gray), _gradient_magnitude(work_b.gray)
    warped_score, resized_score = (
        _ncc(cv2.warpPerspective(edges_a, h, size, flags=cv2.INTER_LINEAR), edges_b, covered) for h in to_work
    )
    if warped_score < resized_score:
        return f"warp matches B worse than no warp (gradient NCC {warped_score:.2f} < {resized_score:.2f})"
    return None


def _gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    return cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))


def _ncc(x: np.ndarray, y: np.ndarray, region: np.ndarray) -> float:
    x = x[region].astype(np.float64)
    y = y[region].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denominator = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    return float(np.dot(x, y)) / denominator if denominator > 0 else 0.0


def _geometry_problem(homography: np.ndarray, a_shape, b_shape) -> str | None:
    if not np.all(np.isfinite(homography)):
        return "homography is not finite"
    corners = _corners(a_shape)
    w = corners @ homography[2, :2] + homography[2, 2]
    if np.any(w <= 0):
        return "homography sends part of A through infinity"
    if w.max() / w.min() > MAX_PERSPECTIVE_SPREAD:
        return f"perspective factor varies {w.max() / w.min():.1f}x across A"
    outline = _project(homography, corners)
    if not _is_convex_same_orientation(outline):
        return "warped outline of A is folded or mirrored"
    area_ratio = _polygon_area(outline) / (b_shape[0] * b_shape[1])
    if not 1.0 / MAX_AREA_CHANGE <= area_ratio <= MAX_AREA_CHANGE:
        return f"warped A is {area_ratio:.3g}x the area of B"
    overlap = _coverage(homography, a_shape, b_shape).mean()
    if overlap < MIN_OVERLAP:
        return f"warped A covers only {overlap:.1%} of B"
    return None


def _corners(shape: tuple[int, ...]) -> np.ndarray:
    height, width = shape[:2]
    return np.array([[0.0, 0.0], [width - 1.0, 0.0], [width - 1.0, height - 1.0], [0.0, height - 1.0]])


def _project(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, 2)
    mapped = np.c_[points, np.ones(len(points))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:3]


def _cross_z(outline: np.ndarray) -> np.ndarray:
    edges = np.roll(outline, -1, axis=0) - outline
    following = np.roll(edges, -1, axis=0)
    return edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]


def _is_convex_same_orientation(outline: np.ndarray) -> bool:
    """A's corners are listed clockwise on screen (y down), which gives positive cross products."""
    return bool(np.all(_cross_z(outline) > 0))


def _polygon_area(outline: np.ndarray) -> float:
    x, y = outline[:, 0], outline[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _coverage(homography: np.ndarray, a_shape, b_shape) -> np.ndarray:
    """Pixels of B whose bilinear sample lies entirely inside A (none blended with the border)."""
    full = np.full(a_shape[:2], 255, np.uint8)
    size = (b_shape[1], b_shape[0])
    warped = cv2.warpPerspective(full, homography, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return warped == 255


def _warped_result(a, b, estimate: _Estimate, resize, notes) -> Alignment:
    size = (b.shape[1], b.shape[0])
    warped = cv2.warpPerspective(a, estimate.homography, size, flags=cv2.INTER_LINEAR)
    return Alignment(
        warped_a=warped,
        homography=estimate.homography,
        method=estimate.method,
        matches=estimate.matches,
        inliers=estimate.inliers,
        inlier_ratio=estimate.inlier_ratio,
        reprojection_error=estimate.reprojection_error,
        valid_mask=_coverage(estimate.homography, a.shape, b.shape),
        ok=True,
        corner_shift_px=corner_shift(estimate.homography, resize, a.shape),
        notes=notes,
    )


def _resized_result(a, b, resize, estimate: _Estimate, notes) -> Alignment:
    """A is only resized; the match statistics are those of the resize, not of the estimate."""
    shift = corner_shift(estimate.homography, resize, a.shape)
    note = (
        f"{estimate.method}: already co-registered ({estimate.identity_inliers} matches agree "
        f"without warping, the homography has {estimate.inliers} inliers and moves the corners "
        f"by {shift:.2f} px)"
    )
    return Alignment(
        warped_a=_resize_to(a, b.shape),
        homography=resize,
        method=estimate.method,
        matches=estimate.matches,
        inliers=estimate.identity_inliers,
        inlier_ratio=estimate.identity_inliers / estimate.matches,
        reprojection_error=estimate.identity_error,
        valid_mask=np.ones(b.shape[:2], bool),
        ok=True,
        corner_shift_px=shift,
        notes=[*notes, note],
    )


def _fallback_result(a, b, resize, notes) -> Alignment:
    return Alignment(
        warped_a=_resize_to(a, b.shape),
        homography=resize,
        method="identity",
        matches=0,
        inliers=0,
        inlier_ratio=0.0,
        reprojection_error=math.nan,
        valid_mask=np.ones(b.shape[:2], bool),
        ok=False,
        notes=notes,
    )


def _resize_to(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    height, width = shape[:2]
    if image.shape[:2] == (height, width):
        return image.copy()
    shrinking = width * height < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
