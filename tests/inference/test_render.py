import io

import cv2
import numpy as np
import pytest
from PIL import Image

from inference.render import (
    CONTOUR_COLOUR,
    ERROR_MAP_COLOURS,
    colorbar_rgb,
    contours_png,
    error_map_png,
    heatmap_png,
    heatmap_rgb,
    mask_png,
    overlay_png,
)


def decode(png: bytes) -> tuple[str, np.ndarray]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.mode, np.asarray(image)


def viridis(level: int) -> list[int]:
    bgr = cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    return bgr[::-1].tolist()


def random_prob(seed=0, shape=(64, 96)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def random_rgb(seed=0, shape=(64, 96, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_heatmap_uses_a_fixed_scale_not_the_image_range():
    low = heatmap_rgb(np.full((8, 8), 0.2, np.float32))
    high = heatmap_rgb(np.full((8, 8), 0.8, np.float32))

    assert low[0, 0].tolist() == viridis(51)
    assert high[0, 0].tolist() == viridis(204)
    assert low[0, 0].tolist() != high[0, 0].tolist()


def test_heatmap_maps_zero_and_one_to_the_ends_of_viridis():
    prob = np.array([[0.0, 1.0]], np.float32)

    colours = heatmap_rgb(prob)

    assert colours[0, 0].tolist() == viridis(0)
    assert colours[0, 1].tolist() == viridis(255)


def test_heatmap_png_is_the_heatmap_plus_a_colour_bar():
    prob = random_prob()

    mode, picture = decode(heatmap_png(prob))

    assert mode == "RGB"
    assert picture.shape[0] == 64
    assert picture.shape[1] > 96
    np.testing.assert_array_equal(picture[:, :96], heatmap_rgb(prob))
    np.testing.assert_array_equal(picture[:, 96:], colorbar_rgb(64))


def test_heatmap_png_without_colour_bar_has_the_map_size():
    prob = random_prob()

    _, picture = decode(heatmap_png(prob, colorbar=False))

    np.testing.assert_array_equal(picture, heatmap_rgb(prob))


def test_colour_bar_runs_from_one_at_the_top_to_zero_at_the_bottom():
    panel = colorbar_rgb(200)
    bar_columns = [x for x in range(panel.shape[1]) if panel[100, x].tolist() == viridis(round(255 * 99 / 199))]
    assert bar_columns, "no column of the panel holds the bar colour for the middle row"
    column = bar_columns[len(bar_columns) // 2]

    assert panel[0, column].tolist() == viridis(255)
    assert panel[199, column].tolist() == viridis(0)


def test_colour_bar_has_dark_tick_labels():
    panel = colorbar_rgb(200)
    bar_end = max(x for x in range(panel.shape[1]) if panel[0, x].tolist() == viridis(255))
    dark = panel[:, bar_end + 1 :].max(axis=2) < 128

    # A tick mark is one short row; a label is a block of strokes.
    assert dark[:20].sum() > 15  # "1" at the top
    assert dark[90:110].sum() > 15  # "0.5" in the middle
    assert dark[180:].sum() > 15  # "0" at the bottom
    assert dark[30:80].sum() == 0  # nothing between the labels


def test_heatmap_rejects_nan_and_non_float_input():
    with pytest.raises(ValueError, match="NaN"):
        heatmap_rgb(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="float"):
        heatmap_rgb(np.zeros((2, 2), np.uint8))


def test_overlay_blends_heatmap_and_b_with_the_given_opacity():
    prob, b = random_prob(1), random_rgb(1)

    mode, picture = decode(overlay_png(prob, b, opacity=0.25))

    assert mode == "RGB"
    assert picture.shape == b.shape
    expected = 0.75 * b + 0.25 * heatmap_rgb(prob)
    assert np.abs(picture - expected).max() <= 0.5 + 1e-9


def test_overlay_with_zero_opacity_is_b():
    b = random_rgb(2)

    _, picture = decode(overlay_png(random_prob(2), b, opacity=0.0))

    np.testing.assert_array_equal(picture, b)


def test_overlay_rejects_a_map_not_in_b_frame():
    with pytest.raises(ValueError, match="B's frame"):
        overlay_png(random_prob(shape=(32, 32)), random_rgb(shape=(64, 64, 3)))


def test_contours_outline_regions_and_leave_the_rest_of_b():
    b = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True

    _, picture = decode(contours_png(mask, b))

    assert picture.shape == b.shape
    assert picture[20, 30].tolist() == list(CONTOUR_COLOUR)  # on the top edge
    assert picture[30, 30].tolist() == [100, 100, 100]  # deep inside
    assert picture[5, 5].tolist() == [100, 100, 100]  # far outside


def test_contours_of_an_empty_mask_are_b_itself():
    b = random_rgb(3)

    _, picture = decode(contours_png(np.zeros(b.shape[:2], bool), b))

    np.testing.assert_array_equal(picture, b)


def test_mask_png_is_single_channel_0_and_255():
    mask = random_prob(4) > 0.5

    mode, picture = decode(mask_png(mask))

    assert mode == "L"
    np.testing.assert_array_equal(picture, mask.astype(np.uint8) * 255)


def test_error_map_colours_each_class():
    pred = np.array([[1, 1, 0, 0]], bool)
    label = np.array([[1, 0, 1, 0]], bool)

    mode, picture = decode(error_map_png(pred, label))

    assert mode == "RGB"
    assert [tuple(c) for c in picture[0]] == [
        ERROR_MAP_COLOURS["tp"],
        ERROR_MAP_COLOURS["fp"],
        ERROR_MAP_COLOURS["fn"],
        ERROR_MAP_COLOURS["tn"],
    ]


def test_error_map_marks_pixels_outside_valid_as_ignored():
    pred = np.ones((2, 2), bool)
    label = np.ones((2, 2), bool)
    valid = np.array([[True, False], [True, True]])

    _, picture = decode(error_map_png(pred, label, valid))

    assert tuple(picture[0, 1]) == ERROR_MAP_COLOURS["ignored"]
    assert tuple(picture[0, 0]) == ERROR_MAP_COLOURS["tp"]


def test_error_map_colours_are_distinct():
    colours = list(ERROR_MAP_COLOURS.values())

    assert len(set(colours)) == len(colours)
