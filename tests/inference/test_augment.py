import numpy as np
import pytest

from inference.augment import (
    augment_pair,
    nuisance_augment,
    paired_augment,
    random_crop,
    shift_image,
)


@pytest.fixture
def triple():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    b = a.copy()
    label = np.zeros((40, 48), bool)
    label[5:15, 30:44] = True
    b[label] = 255 - b[label]
    return a, b, label


def test_paired_ops_keep_a_b_and_label_consistent(triple):
    for seed in range(12):
        a, b, label = paired_augment(*triple, np.random.default_rng(seed), crop=32)
        assert a.shape == b.shape == (32, 32, 3) and label.shape == (32, 32)
        changed = np.any(a != b, axis=2)
        assert np.array_equal(changed, label)


def test_paired_ops_do_not_modify_inputs(triple):
    copies = [x.copy() for x in triple]
    paired_augment(*triple, np.random.default_rng(1), crop=24)
    assert all(np.array_equal(x, y) for x, y in zip(triple, copies, strict=True))


def test_paired_ops_eventually_rotate_and_flip(triple):
    outputs = {paired_augment(*triple, np.random.default_rng(s))[2].tobytes() for s in range(20)}
    assert len(outputs) >= 4


def test_random_crop_keeps_images_smaller_than_the_crop(triple):
    a, _, label = random_crop(*triple, np.random.default_rng(0), crop=64)
    assert a is triple[0] and label.shape == (40, 48)


def test_nuisance_ops_leave_the_label_alone(triple):
    label = augment_pair(*triple, np.random.default_rng(3), crop=32)[2]
    original = paired_augment(*triple, np.random.default_rng(3), crop=32)[2]
    assert np.array_equal(label, original)


def test_nuisance_ops_change_pixels_but_keep_dtype_and_shape(triple):
    a, b = nuisance_augment(triple[0], triple[1], np.random.default_rng(5), strength=1.0)
    assert a.dtype == b.dtype == np.uint8
    assert a.shape == triple[0].shape
    assert not np.array_equal(a, triple[0]) or not np.array_equal(b, triple[1])


def test_zero_strength_is_identity(triple):
    a, b = nuisance_augment(triple[0], triple[1], np.random.default_rng(5), strength=0.0)
    assert np.array_equal(a, triple[0]) and np.array_equal(b, triple[1])


def test_augmentations_are_deterministic_for_a_seed(triple):
    first = augment_pair(*triple, np.random.default_rng(9), crop=32)
    second = augment_pair(*triple, np.random.default_rng(9), crop=32)
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_shift_image_moves_content_without_black_borders():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10, 1).repeat(3, axis=2) + 50
    shifted = shift_image(img, 2, -1)
    assert np.array_equal(shifted[0:8, 2:], img[1:9, :8])
    assert shifted.min() >= 50
