"""Pictures of results, as PNG bytes (and RGB arrays for the pieces worth testing).

Colour choices are colour-blind safe:

- probabilities use viridis (perceptually uniform) on a **fixed** 0..1 scale: probability ``p``
  gets colour ``viridis(round(255 * p))`` in every image, so a map of 0.2 everywhere and one of
  0.8 everywhere look different; maps are never stretched to their own min/max;
- the error map uses the Okabe-Ito palette, see :data:`ERROR_MAP_COLOURS`;
- predicted regions are outlined in Okabe-Ito yellow over a black halo, visible on light and
  dark ground alike.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PNG_COMPRESSION = 1  # zlib level: result pictures are written once per pair on the engine's critical path
# No per-row PNG filter: choosing one per row cost more than the deflate itself; unfiltered, a 256 px
# heatmap, error map and mask encode about 3x faster and, on these maps, into fewer bytes.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]

ERROR_MAP_COLOURS: dict[str, tuple[int, int, int]] = {
    "tp": (0, 158, 115),  # Okabe-Ito bluish green: change found
    "fp": (213, 94, 0),  # Okabe-Ito vermillion: false alarm
    "fn": (86, 180, 233),  # Okabe-Ito sky blue: change missed
    "tn": (64, 64, 64),  # dark gray: no change, none predicted
    "ignored": (255, 255, 255),  # white: outside the valid region, not scored
}
CONTOUR_COLOUR = (240, 228, 66)  # Okabe-Ito yellow
CONTOUR_HALO = (0, 0, 0)
COLORBAR_TICKS = ((1.0, "1"), (0.5, "0.5"), (0.0, "0"))
_PANEL_BACKGROUND = 255
_TEXT_COLOUR = (0, 0, 0)


def probability_levels(prob: np.ndarray) -> np.ndarray:
    """``round(255 p)`` as uint8: the 256 levels a heatmap colours (a stored map's compact form).

    Values outside [0, 1] (rounding noise) are clipped; NaN is an error.
    """
    prob = _checked_prob(prob)
    levels = np.multiply(prob, 255.0, dtype=np.float64)  # in float64, as before: the same rounding
    np.rint(levels, out=levels)
    return np.clip(levels, 0.0, 255.0, out=levels).astype(np.uint8)  # clipping after rounding: the same levels


def heatmap_rgb(prob: np.ndarray) -> np.ndarray:
    """Viridis colours of ``prob`` (float HxW) on the fixed 0..1 scale, RGB uint8."""
    return _viridis(probability_levels(prob))


def heatmap_png(prob: np.ndarray, *, colorbar: bool = True) -> bytes:
    """Heatmap PNG; with ``colorbar`` a strip labelled 0 / 0.5 / 1 is added on the right."""
    return heatmap_levels_png(probability_levels(prob), colorbar=colorbar)


def heatmap_levels_png(levels: np.ndarray, *, colorbar: bool = True) -> bytes:
    """The heatmap PNG of ``probability_levels`` (uint8 HxW): the same pixels as ``heatmap_png``."""
    levels = np.asarray(levels)
    if levels.dtype != np.uint8 or levels.ndim != 2:
        raise ValueError(f"levels must be uint8 HxW, got {levels.dtype} {levels.shape}")
    picture = _viridis(levels)
    if colorbar:
        picture = np.hstack([picture, _colorbar_panel(picture.shape[0])])
    return encode_png(picture)


def colorbar_rgb(height: int) -> np.ndarray:
    """A white panel ``height`` tall with a vertical viridis bar (1 at the top) and tick labels."""
    return _colorbar_panel(height).copy()


@functools.lru_cache(maxsize=16)
def _colorbar_panel(height: int) -> np.ndarray:
    font_scale = float(np.clip(height / 500.0, 0.3, 1.0))
    bar_width = max(8, height // 16)
    tick_length = max(3, bar_width // 3)
    label_width = max(
        cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] for _, text in COLORBAR_TICKS
    )
    gap = 4
    width = gap + bar_width + tick_length + 2 + label_width + gap
    panel = np.full((height, width, 3), _PANEL_BACKGROUND, np.uint8)
    panel[:, gap : gap + bar_width] = _colorbar_column(height)[:, None, :]
    for value, text in COLORBAR_TICKS:
        _draw_tick(panel, value, text, gap + bar_width, tick_length, font_scale)
    return panel


def overlay_png(prob: np.ndarray, b: np.ndarray, opacity: float = 0.5) -> bytes:
    """The heatmap blended over image B: ``(1 - opacity) * B + opacity * heatmap`` everywhere."""
    return encode_png(overlay_rgb(prob, b, opacity))


def overlay_rgb(prob: np.ndarray, b: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    b = _as_rgb(b)
    heat = heatmap_rgb(prob)
    _check_frame(heat, b)
    blended = (1.0 - opacity) * b.astype(np.float64) + opacity * heat.astype(np.float64)
    return np.rint(blended).astype(np.uint8)


def contours_png(mask: np.ndarray, b: np.ndarray) -> bytes:
    """Outlines of the predicted regions (and their holes) drawn on image B."""
    return encode_png(contours_rgb(mask, b))


def contours_rgb(mask: np.ndarray, b: np.ndarray) -> np.ndarray:
    mask = _as_mask(mask)
    picture = _as_rgb(b).copy()
    _check_frame(mask, picture)
    outlines, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(min(mask.shape) / 256))
    cv2.drawContours(picture, outlines, -1, CONTOUR_HALO, thickness + 2)
    cv2.drawContours(picture, outlines, -1, CONTOUR_COLOUR, thickness)
    return picture


def mask_png(mask: np.ndarray) -> bytes:
    """Single-channel PNG: 255 = changed, 0 = unchanged."""
    return encode_png(_as_mask(mask).astype(np.uint8) * 255)


def error_map_png(pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> bytes:
    """TP / FP / FN / TN (and pixels outside ``valid``) in the colours of ERROR_MAP_COLOURS."""
    return encode_png(error_map_rgb(pred, label, valid))


def error_map_rgb(pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    pred, label = _as_mask(pred), _as_mask(label)
    _check_frame(pred, label)
    # One palette lookup: code = pred + 2 * label (tn, fp, fn, tp), 4 = outside the valid region.
    code = pred.view(np.uint8) + 2 * label.view(np.uint8)
    if valid is not None:
        valid = _as_mask(valid)
        _check_frame(valid, label)
        code[~valid] = 4
    return _ERROR_PALETTE[code]


_ERROR_PALETTE = np.array([ERROR_MAP_COLOURS[name] for name in ("tn", "fp", "fn", "tp", "ignored")], np.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 HxW (gray) or HxWx3 (RGB) picture, or a bool mask (0/255), written with
    OpenCV at zlib level ``PNG_COMPRESSION`` without row filters (``PNG_PARAMS``)."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.view(np.uint8) * 255
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"encode_png needs uint8 HxW or HxWx3 pixels, got {array.dtype} {array.shape}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", array, PNG_PARAMS)
    if not ok:
        raise ValueError("OpenCV could not encode the picture as PNG")
    return data.tobytes()


def _viridis(levels: np.ndarray) -> np.ndarray:
    bgr = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _colorbar_column(height: int) -> np.ndarray:
    """RGB colours of a vertical bar: value 1 in the top row, 0 in the bottom row."""
    values = np.linspace(1.0, 0.0, height) if height > 1 else np.ones(1)
    levels = np.rint(values * 255.0).astype(np.uint8)[:, None]
    return _viridis(levels)[:, 0, :]


def _draw_tick(panel, value: float, text: str, bar_right: int, length: int, font_scale: float):
    height = panel.shape[0]
    row = round((1.0 - value) * (height - 1))
    cv2.line(panel, (bar_right, row), (bar_right + length - 1, row), _TEXT_COLOUR, 1)
    (_, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    baseline = int(np.clip(row + text_height // 2, text_height, height - 1))
    origin = (bar_right + length + 2, baseline)
    cv2.putText(panel, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, _TEXT_COLOUR, 1, cv2.LINE_AA)


def _checked_prob(prob: np.ndarray) -> np.ndarray:
    prob = np.asarray(prob)
    if prob.ndim != 2 or not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"prob must be a float HxW array, got {prob.dtype} {prob.shape}")
    if np.isnan(prob).any():
        raise ValueError("prob contains NaN")
    return prob


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f"mask must be a bool HxW array, got {mask.dtype} {mask.shape}")
    return mask.astype(bool)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 HxWx3, got {image.dtype} {image.shape}")
    return image


def _check_frame(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(
            f"sizes differ: {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}; "
            "maps and masks must be in image B's frame at B's size"
        )
