"""Near-duplicate fingerprints: re-encodes, shifts and crops of one scene match; distinct scenes do
not, on synthetic scenes and on the real crops of ../shared/data; the banded matcher finds exactly
what comparing every pair finds."""

import io
import itertools
from functools import cache

import cv2
import numpy as np
import pytest
from PIL import Image

from inference import near_duplicates as nd
from inference.images import load_image
from inference.synthetic import CATEGORIES, generate_pair
from tests.shared_data import shared_folder

SIZE = 256
MARGIN = 16  # scenes are rendered larger, so a shift shows new ground at the edge, as a tile would


@cache
def scene(index: int) -> np.ndarray:
    """A synthetic aerial scene of SIZE + 2 * MARGIN pixels."""
    return generate_pair(index, CATEGORIES[index % 3], size=SIZE + 2 * MARGIN, seed=27).a


def window(index: int, dx: int = 0, dy: int = 0) -> np.ndarray:
    return scene(index)[MARGIN + dy : MARGIN + dy + SIZE, MARGIN + dx : MARGIN + dx + SIZE]


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return load_image(buffer.getvalue())


def is_near(a: np.ndarray, b: np.ndarray) -> bool:
    return nd.distance(nd.fingerprint(a), nd.fingerprint(b)) <= nd.THRESHOLD


SCENES = range(8)


@pytest.mark.parametrize("index", SCENES)
def test_it_finds_a_jpeg_quality_75_reencode(index):
    original, copy = window(index), jpeg(window(index))
    assert not np.array_equal(original, copy)
    assert is_near(original, copy)
    assert nd.fingerprint(original).content != nd.fingerprint(copy).content


@pytest.mark.parametrize("shift", range(1, 9))
def test_it_finds_shifts_up_to_8_pixels(shift):
    rng = np.random.default_rng(shift)
    for index in SCENES:
        dx, dy = (int(v) for v in rng.choice([-1, 1], 2) * [shift, rng.integers(0, shift + 1)])
        assert is_near(window(index), window(index, dx, dy)), (index, dx, dy)
        assert is_near(window(index), window(index, dy, dx)), (index, dy, dx)


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.08, 0.10])
def test_it_finds_crops_up_to_10_percent(fraction):
    cut = int(SIZE * fraction)
    rng = np.random.default_rng(int(fraction * 100))
    for index in SCENES:
        original = window(index)
        left, top = int(rng.integers(0, cut + 1)), int(rng.integers(0, cut + 1))
        crops = {
            "both sides": original[top : top + SIZE - cut, left : left + SIZE - cut],
            "width only": original[:, left : left + SIZE - cut],
            "height only": original[top : top + SIZE - cut, :],
            "corner": original[cut:, cut:],
        }
        for how, crop in crops.items():
            assert is_near(original, crop), (index, how)
            resized = np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BILINEAR))
            assert is_near(original, resized), (index, how, "resized")


@pytest.mark.parametrize("shift", [4, 8])
def test_it_finds_shifts_that_fill_the_border_with_black_or_wrap_around(shift):
    for index in SCENES:
        moved = cv2.warpAffine(window(index), np.float32([[1, 0, shift], [0, 1, -shift]]), (SIZE, SIZE))
        assert is_near(window(index), moved), index
        assert is_near(window(index), np.roll(window(index), (shift, shift), axis=(0, 1))), index


def test_a_hash_match_between_different_scenes_is_refused_by_the_thumbnails():
    a, b = nd.fingerprint(window(0)), nd.fingerprint(window(1))
    forged = nd.Fingerprint(b.content, a.hashes, a.tints, b.thumb)  # a's hashes, b's pixels
    assert nd.distance(a, forged) == 64
    assert nd.distance(a, nd.Fingerprint(b.content, a.hashes, a.tints, a.thumb)) == 0


def test_it_finds_a_crop_that_was_reencoded():
    for index in SCENES:
        assert is_near(window(index), jpeg(window(index)[20:, 12:]))


def test_a_grey_image_and_its_reencode_match():
    grey = np.asarray(Image.fromarray(window(3)).convert("L"))
    assert is_near(grey, jpeg(np.repeat(grey[..., None], 3, axis=2)))


def test_distinct_synthetic_scenes_do_not_match():
    prints = [nd.fingerprint(generate_pair(i, CATEGORIES[i % len(CATEGORIES)], size=SIZE, seed=99).a)
              for i in range(80)]  # fmt: skip
    assert nd.find_matches(prints) == []
    closest = min(nd.distance(a, b) for a, b in itertools.combinations(prints, 2))
    assert closest > nd.THRESHOLD


# pixelmatch's pair 8 is 8a.png against 5b.png and 8a shows 5a's gradient triangle: one scene in two pairs.
SAME_SCENE = {frozenset({"pixelmatch_fixtures/5", "pixelmatch_fixtures/8"})}


def test_distinct_scenes_of_the_shared_data_sets_do_not_match():
    """Every image of every pair of the three shared sets against every image of every other pair:
    0 matches between different scenes (A and B of one pair are one scene, so not compared)."""
    images, owners = [], []
    for folder in ("levir_cd_bit_samples", "levir_cd_scm_samples", "pixelmatch_fixtures"):
        root = shared_folder(folder)
        for path in sorted((root / "A").glob("*.png")):
            for role in ("A", "B"):
                images.append(nd.fingerprint(load_image(root / role / path.name, max_pixels=None)))
                owners.append(f"{folder}/{path.stem}")
    pair_ids = {owner: n for n, owner in enumerate(dict.fromkeys(owners))}
    matches = nd.find_matches(images, groups=[pair_ids[owner] for owner in owners])
    found = {frozenset({owners[m.first], owners[m.second]}) for m in matches}
    assert found == SAME_SCENE
    assert len(pair_ids) == 22


def test_banded_matching_finds_what_comparing_every_pair_finds():
    rng = np.random.default_rng(5)
    originals = [window(i) for i in SCENES]
    copies = [jpeg(img[int(rng.integers(0, 20)) :, int(rng.integers(0, 20)) :]) for img in originals]
    prints = [nd.fingerprint(img) for img in [*originals, *copies, originals[0]]]
    expected = {
        (i, j): nd.distance(prints[i], prints[j])
        for i, j in itertools.combinations(range(len(prints)), 2)
        if nd.distance(prints[i], prints[j]) <= nd.THRESHOLD
    }
    found = nd.find_matches(prints)
    assert {(m.first, m.second): m.distance for m in found} == expected
    assert {(m.first, m.second) for m in found if m.exact} == {(0, len(prints) - 1)}
    assert len(expected) >= len(SCENES) + 2


def test_groups_leave_out_pairs_of_one_group():
    prints = [nd.fingerprint(window(0)), nd.fingerprint(jpeg(window(0))), nd.fingerprint(window(0))]
    assert [(m.first, m.second) for m in nd.find_matches(prints, groups=[1, 1, 2])] == [(0, 2), (1, 2)]


def test_a_fingerprint_survives_its_text_form():
    fp = nd.fingerprint(window(1))
    assert nd.Fingerprint.from_text(fp.as_text()) == fp
    assert len(fp.hashes) == len(nd.WINDOWS) == len(fp.tints)
