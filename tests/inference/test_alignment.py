import json

import cv2
import numpy as np
import pytest

from inference.alignment import align_pair, corner_shift, resize_homography
from inference.images import load_image
from tests.shared_data import shared_folder, shared_names

LEVIR_PAIRS = shared_names("levir_cd_bit_samples")

# Maps B's pixels to A's: A is B seen with a shift, a small rotation/shear and some perspective.
B_TO_A = np.array([[1.05, 0.03, -12.0], [-0.02, 0.98, 8.0], [2e-5, -1e-5, 1.0]])


@pytest.fixture(scope="module")
def photo():
    """A real 512x512 aerial photo (LEVIR-CD test_7, B, downscaled)."""
    full = load_image(shared_folder("levir_cd_scm_samples") / "B" / "test_7.png")
    return cv2.resize(full, (512, 512), interpolation=cv2.INTER_AREA)


def mean_corner_error(estimated, expected, a_shape):
    height, width = a_shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)

    def project(h):
        mapped = np.c_[corners, np.ones(4)] @ h.T
        return mapped[:, :2] / mapped[:, 2:]

    return float(np.linalg.norm(project(estimated) - project(expected), axis=1).mean())


def test_it_recovers_a_known_homography(photo):
    a = cv2.warpPerspective(photo, B_TO_A, (512, 512))

    result = align_pair(a, photo)

    assert result.ok
    assert result.method == "sift"
    assert mean_corner_error(result.homography, np.linalg.inv(B_TO_A), a.shape) < 1.5
    assert result.inliers >= 10
    assert 0 < result.inlier_ratio <= 1
    assert result.reprojection_error < 1.5


def test_warped_a_lines_up_with_b_where_it_is_valid(photo):
    a = cv2.warpPerspective(photo, B_TO_A, (512, 512))

    result = align_pair(a, photo)

    assert result.warped_a.shape == photo.shape
    assert result.valid_mask.shape == photo.shape[:2]
    assert 0.8 < result.valid_mask.mean() < 1.0
    inside = cv2.erode(result.valid_mask.astype(np.uint8), np.ones((5, 5))).astype(bool)
    difference = np.abs(result.warped_a.astype(int) - photo.astype(int))[inside]
    assert difference.mean() < 8
    unaligned = np.abs(a.astype(int) - photo.astype(int))[inside]
    assert unaligned.mean() > 3 * difference.mean()


def test_it_recovers_the_homography_when_matching_on_a_downscaled_copy(photo):
    a = cv2.warpPerspective(photo, B_TO_A, (512, 512))

    result = align_pair(a, photo, max_side=256)

    assert result.ok
    assert mean_corner_error(result.homography, np.linalg.inv(B_TO_A), a.shape) < 1.5


def test_it_aligns_images_of_different_sizes(photo):
    a_full = cv2.warpPerspective(photo, B_TO_A, (512, 512))
    a = cv2.resize(a_full, (384, 320), interpolation=cv2.INTER_AREA)
    full_to_small = resize_homography(a_full.shape, a.shape)
    expected = np.linalg.inv(B_TO_A) @ np.linalg.inv(full_to_small)

    result = align_pair(a, photo)

    assert result.ok
    assert result.warped_a.shape == photo.shape
    assert mean_corner_error(result.homography, expected, a.shape) < 1.5


def test_identical_images_stay_untouched(photo):
    tile = photo[:256, :256]

    result = align_pair(tile, tile)

    assert result.ok
    assert result.method == "sift"
    np.testing.assert_array_equal(result.homography, np.eye(3))
    np.testing.assert_array_equal(result.warped_a, tile)
    assert result.valid_mask.all()


@pytest.mark.parametrize("name", LEVIR_PAIRS)
def test_co_registered_levir_pairs_are_left_essentially_unchanged(name):
    a = load_image(shared_folder("levir_cd_bit_samples") / "A" / name)
    b = load_image(shared_folder("levir_cd_bit_samples") / "B" / name)

    result = align_pair(a, b)

    assert corner_shift(result.homography, np.eye(3), a.shape) < 2.0
    if np.array_equal(result.homography, np.eye(3)):
        np.testing.assert_array_equal(result.warped_a, a)


def test_clustered_matches_that_agree_with_no_warp_keep_the_pair_unwarped():
    # ORB's homography on this co-registered pair (LEVIR-CD train_386) zooms the corners by
    # 20 px, but all its inliers lie within 5 px without any warp: the pair is kept as is.
    name = "train_386_0512_0768.png"
    a = load_image(shared_folder("levir_cd_bit_samples") / "A" / name)
    b = load_image(shared_folder("levir_cd_bit_samples") / "B" / name)

    result = align_pair(a, b)

    assert result.ok
    assert result.corner_shift_px > 10
    np.testing.assert_array_equal(result.homography, np.eye(3))
    np.testing.assert_array_equal(result.warped_a, a)
    assert result.reprojection_error <= 5.0


def test_a_warp_that_matches_b_worse_than_no_warp_is_rejected():
    # On the full LEVIR-CD test_7 tile ORB's best homography lowers the gradient correlation
    # with B (0.06 against 0.13 without warping).
    a = load_image(shared_folder("levir_cd_scm_samples") / "A" / "test_7.png")
    b = load_image(shared_folder("levir_cd_scm_samples") / "B" / "test_7.png")

    result = align_pair(a, b)

    assert any("worse than no warp" in note for note in result.notes)
    assert not result.ok
    np.testing.assert_array_equal(result.warped_a, a)


def test_flat_images_fall_back_to_identity_without_raising():
    flat = np.full((64, 64, 3), 128, np.uint8)

    result = align_pair(flat, flat)

    assert (result.ok, result.method, result.matches, result.inliers) == (False, "identity", 0, 0)
    np.testing.assert_array_equal(result.warped_a, flat)
    np.testing.assert_array_equal(result.homography, np.eye(3))
    assert result.notes  # says why SIFT and ORB were not used


def test_flat_a_of_another_size_is_resized_to_b(photo):
    flat = np.full((100, 60, 3), 30, np.uint8)

    result = align_pair(flat, photo[:128, :96])

    assert not result.ok
    assert result.warped_a.shape == (128, 96, 3)
    assert result.valid_mask.shape == (128, 96)
    assert result.valid_mask.all()
    assert (result.warped_a == 30).all()


def test_unrelated_images_are_not_aligned(photo):
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)

    result = align_pair(noise, photo[:256, :256])

    assert not result.ok
    assert result.method == "identity"


def test_grayscale_inputs_are_accepted(photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    a = cv2.warpPerspective(gray, B_TO_A, (512, 512))

    result = align_pair(a, gray)

    assert result.ok
    assert result.warped_a.shape == gray.shape


def test_resize_homography_matches_cv2_resize():
    image = np.random.default_rng(1).integers(0, 256, (40, 60), dtype=np.uint8).astype(np.float32)
    h = resize_homography(image.shape, (80, 90))

    resized = cv2.resize(image, (90, 80), interpolation=cv2.INTER_LINEAR)
    warped = cv2.warpPerspective(image, h, (90, 80), flags=cv2.INTER_LINEAR)

    np.testing.assert_allclose(warped[2:-2, 2:-2], resized[2:-2, 2:-2], atol=0.5)


def test_as_dict_is_json_safe(photo):
    flat = np.zeros((32, 32, 3), np.uint8)
    for result in (align_pair(flat, flat), align_pair(photo[:256, :256], photo[:256, :256])):
        summary = result.as_dict()

        json.dumps(summary, allow_nan=False)
        assert summary["homography"] == result.homography.tolist()
        assert set(summary) >= {"method", "ok", "matches", "inliers", "inlier_ratio"}
        assert "reprojection_error" in summary
        assert "valid_fraction" in summary
