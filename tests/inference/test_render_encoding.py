"""The result pictures' PNG encoder (OpenCV, fast zlib level): what a browser decodes is what was drawn."""

import io

import numpy as np
import pytest
from PIL import Image

from inference import render


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_an_rgb_picture_round_trips_with_its_channels_in_order():
    picture = np.random.default_rng(0).integers(0, 256, (17, 23, 3), np.uint8)
    picture[0, 0] = (255, 0, 0)  # pure red stays red (no BGR swap)
    decoded = _decoded(render.encode_png(picture))
    np.testing.assert_array_equal(decoded, picture)
    assert tuple(decoded[0, 0]) == (255, 0, 0)


def test_masks_are_single_channel_0_or_255():
    mask = np.zeros((9, 11), bool)
    mask[2:5, 3:7] = True
    decoded = _decoded(render.mask_png(mask))
    assert decoded.ndim == 2
    np.testing.assert_array_equal(decoded, mask.astype(np.uint8) * 255)


def test_the_error_map_lookup_gives_each_case_its_colour():
    pred = np.array([[1, 1, 0, 0, 1]], bool)
    label = np.array([[1, 0, 1, 0, 1]], bool)
    valid = np.array([[1, 1, 1, 1, 0]], bool)
    decoded = _decoded(render.error_map_png(pred, label, valid))
    expected = [render.ERROR_MAP_COLOURS[k] for k in ("tp", "fp", "fn", "tn", "ignored")]
    assert [tuple(int(v) for v in px) for px in decoded[0]] == expected


def test_the_heatmap_keeps_its_colour_bar_and_it_is_not_shared_between_callers():
    prob = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    decoded = _decoded(render.heatmap_png(prob))
    assert decoded.shape[0] == 64 and decoded.shape[1] > 64
    np.testing.assert_array_equal(decoded[:, :64], render.heatmap_rgb(prob))
    bar = render.colorbar_rgb(64)
    bar[:] = 0  # a caller scribbling on its copy changes nothing for the next picture
    np.testing.assert_array_equal(_decoded(render.heatmap_png(prob)), decoded)


def test_other_pixel_types_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        render.encode_png(np.zeros((4, 4), np.float32))
