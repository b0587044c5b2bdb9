import csv
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from inference.synthetic import (
    CATEGORIES,
    NO_CHANGE_CATEGORIES,
    export_levir,
    generate_benchmark,
    generate_pair,
)

SIZE = 96


@pytest.fixture(scope="module")
def benchmark():
    return generate_benchmark(32, size=SIZE, seed=3)


def _mean_abs_diff(pair):
    return np.abs(pair.a.astype(np.float32) - pair.b.astype(np.float32)).mean(axis=2)


def _diff_after_colour_matching(pair):
    """|A-B| after fitting B = gain * A + offset per channel, which removes global illumination."""
    a = pair.a.reshape(-1, 3).astype(np.float64)
    b = pair.b.reshape(-1, 3).astype(np.float64)
    residual = np.empty_like(a)
    for channel in range(3):
        gain, offset = np.polyfit(a[:, channel], b[:, channel], 1)
        residual[:, channel] = np.abs(gain * a[:, channel] + offset - b[:, channel])
    return residual.mean(axis=1).reshape(pair.label.shape)


def test_it_is_byte_identical_for_the_same_seed(benchmark):
    again = generate_benchmark(32, size=SIZE, seed=3)
    for first, second in zip(benchmark, again, strict=True):
        assert first.name == second.name
        assert first.a.tobytes() == second.a.tobytes()
        assert first.b.tobytes() == second.b.tobytes()
        assert first.label.tobytes() == second.label.tobytes()


def test_it_differs_between_seeds(benchmark):
    other = generate_benchmark(8, size=SIZE, seed=4)
    assert all(not np.array_equal(x.a, y.a) for x, y in zip(benchmark[:8], other, strict=True))


def test_a_pair_does_not_depend_on_how_many_were_generated(benchmark):
    short = generate_benchmark(5, size=SIZE, seed=3)
    assert all(np.array_equal(x.b, y.b) for x, y in zip(benchmark[:5], short, strict=True))


def test_it_balances_categories(benchmark):
    counts = Counter(pair.category for pair in benchmark)
    assert set(counts) == set(CATEGORIES)
    assert set(counts.values()) == {32 // len(CATEGORIES)}


def test_it_restricts_to_requested_categories():
    pairs = generate_benchmark(6, size=SIZE, seed=0, categories=["misaligned", "object_added"])
    assert [p.category for p in pairs] == ["misaligned", "object_added"] * 3


def test_it_rejects_unknown_categories():
    with pytest.raises(ValueError, match="unknown"):
        generate_benchmark(2, size=SIZE, categories=["explosion"])


def test_it_produces_rgb_uint8_images_and_bool_labels(benchmark):
    for pair in benchmark:
        assert pair.a.shape == pair.b.shape == (SIZE, SIZE, 3)
        assert pair.a.dtype == pair.b.dtype == np.uint8
        assert pair.label.shape == (SIZE, SIZE) and pair.label.dtype == bool


def test_labels_are_empty_exactly_for_no_change_categories(benchmark):
    for pair in benchmark:
        if pair.category in NO_CHANGE_CATEGORIES:
            assert not pair.label.any(), pair.name
        else:
            assert pair.label.sum() >= 20, pair.name


def test_no_change_pairs_still_differ_in_pixels(benchmark):
    for pair in benchmark:
        if pair.category in NO_CHANGE_CATEGORIES:
            assert _mean_abs_diff(pair).mean() > 3.0, pair.name


@pytest.mark.parametrize("category", ["object_added", "object_removed", "object_moved", "color_change", "shape_change"])
def test_label_marks_where_pixels_actually_changed(category):
    for index in range(4):
        pair = generate_pair(index, category, size=SIZE, seed=11)
        diff = _diff_after_colour_matching(pair)
        inside, outside = diff[pair.label].mean(), diff[~pair.label].mean()
        assert inside > 3 * outside, (pair.name, inside, outside)


def test_misaligned_b_is_a_warped_view_not_a_pixel_copy():
    for index in range(4):
        pair = generate_pair(index, "misaligned", size=SIZE, seed=5)
        assert not np.allclose(pair.homography, np.eye(3))
        unchanged = ~pair.label
        assert _mean_abs_diff(pair)[unchanged].mean() > 8.0, pair.name
        # Warped borders show scene content, not black fill.
        border = np.concatenate([pair.b[0], pair.b[-1], pair.b[:, 0], pair.b[:, -1]])
        assert (border.max(axis=1) < 10).mean() < 0.05


def test_misaligned_label_follows_the_homography():
    """Warping A with the stored homography lines it up with B outside the change."""
    import cv2

    pair = generate_pair(2, "misaligned", size=SIZE, seed=5)
    warped_a = cv2.warpPerspective(pair.a, pair.homography, (SIZE, SIZE))
    inner = np.zeros((SIZE, SIZE), bool)
    inner[20:-20, 20:-20] = True
    keep = inner & ~cv2.dilate(pair.label.astype(np.uint8), np.ones((5, 5))).astype(bool)
    aligned = np.abs(warped_a.astype(float) - pair.b).mean(axis=2)[keep].mean()
    raw = _mean_abs_diff(pair)[keep].mean()
    assert aligned < raw / 2


def test_splits_cover_train_val_and_test_in_each_category():
    pairs = generate_benchmark(8 * 20, size=32, seed=0)
    for category in CATEGORIES:
        splits = Counter(p.split for p in pairs if p.category == category)
        assert splits == {"train": 14, "val": 3, "test": 3}


def test_export_levir_round_trips(tmp_path, benchmark):
    root = export_levir(benchmark[:8], tmp_path / "levir")
    listed = [
        name for split in ("train", "val", "test") for name in (root / "list" / f"{split}.txt").read_text().split()
    ]
    assert sorted(listed) == sorted(f"{p.name}.png" for p in benchmark[:8])
    for pair in benchmark[:8]:
        a = np.asarray(Image.open(root / "A" / f"{pair.name}.png"))
        label = np.asarray(Image.open(root / "label" / f"{pair.name}.png"))
        assert np.array_equal(a, pair.a)
        assert set(np.unique(label)) <= {0, 255}
        assert np.array_equal(label == 255, pair.label)
    with open(root / "categories.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["name"], r["category"], r["split"]) for r in rows] == [
        (p.name, p.category, p.split) for p in benchmark[:8]
    ]
