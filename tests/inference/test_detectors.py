import numpy as np
import pytest
import torch

from inference.detectors.compare_head import CompareHeadNet
from inference.detectors.learned import LearnedDetector
from inference.detectors.unet import FCSiamDiff
from inference.registry import create_detector, detector_info, list_detectors
from inference.runtime import seed_everything
from tests.inference.conftest import CHANGE_BOX, changed_pair, textured_image

SMALL_INPUT = 64
CLASSICAL = ["absdiff", "ssim"]


def small_options(name: str) -> dict:
    """Learned detectors run at 64 px in tests (random weights); the rest take no options."""
    return {"input_size": SMALL_INPUT} if detector_info(name).learned else {}


_built: dict[str, object] = {}


def build(name: str):
    """One random-weight instance per detector for the whole module (ResNet/VGG are slow)."""
    if name not in _built:
        seed_everything(0)
        _built[name] = create_detector(name, weights=None, device="cpu", **small_options(name))
    return _built[name]


def assert_probability_map(prob: np.ndarray, shape: tuple[int, int]) -> None:
    assert prob.shape == shape
    assert prob.dtype == np.float32
    assert np.isfinite(prob).all()
    assert prob.min() >= 0.0
    assert prob.max() <= 1.0


@pytest.mark.parametrize("name", list_detectors())
def test_it_returns_a_probability_map_in_bs_frame_and_size(name, rng):
    a = textured_image(rng, 70, 90)
    b = textured_image(rng, 96, 80)
    prob = build(name).predict(a, b)
    assert_probability_map(prob, (96, 80))


@pytest.mark.parametrize("name", list_detectors())
def test_predict_batch_matches_predict_pair_by_pair(name, rng):
    detector = build(name)
    pairs = [changed_pair(rng)[:2], (textured_image(rng, 40, 50), textured_image(rng, 48, 56))]
    batched = detector.predict_batch(pairs)
    assert len(batched) == 2
    for (a, b), prob in zip(pairs, batched, strict=True):
        assert_probability_map(prob, b.shape[:2])
        np.testing.assert_allclose(prob, detector.predict(a, b), atol=1e-5)


@pytest.mark.parametrize("name", list_detectors())
def test_it_is_deterministic_for_a_seed(name, pair):
    a, b, _ = pair
    seed_everything(7)
    first = create_detector(name, weights=None, device="cpu", **small_options(name))
    seed_everything(7)
    second = create_detector(name, weights=None, device="cpu", **small_options(name))
    np.testing.assert_array_equal(first.predict(a, b), second.predict(a, b))
    assert first.info.as_dict() == second.info.as_dict()


@pytest.mark.parametrize("name", [*CLASSICAL, "ensemble"])
def test_classical_maps_are_higher_where_b_changed(name, pair):
    a, b, label = pair
    prob = build(name).predict(a, b)
    assert prob[label].mean() > prob[~label].mean() + 0.2


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_maps_are_near_zero_for_identical_images(name, rng):
    image = textured_image(rng, 48, 48)
    assert build(name).predict(image, image).max() < 1e-3


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_detectors_resize_a_to_bs_frame(name, pair):
    a, b, label = pair
    doubled_a = np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)
    prob = build(name).predict(doubled_a, b)
    assert prob.shape == b.shape[:2]
    assert prob[label].mean() > prob[~label].mean() + 0.2


def test_it_rejects_images_that_are_not_rgb_uint8(pair):
    a, b, _ = pair
    for detector in (build("absdiff"), build("siamese-unet")):
        with pytest.raises(ValueError, match="uint8"):
            detector.predict(a.astype(np.float32), b)
        with pytest.raises(ValueError, match="HxWx3"):
            detector.predict(a[..., 0], b)


def test_absdiff_is_the_normalised_rgb_distance():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 255, np.uint8)
    prob = create_detector("absdiff", blur_sigma=0).predict(a, b)
    np.testing.assert_allclose(prob, 1.0, atol=1e-6)
    b[..., 1:] = 0
    prob = create_detector("absdiff", blur_sigma=0).predict(a, b)
    np.testing.assert_allclose(prob, 1 / np.sqrt(3), atol=1e-6)


LEARNED = [n for n in list_detectors() if detector_info(n).learned]


@pytest.mark.parametrize("name", LEARNED)
def test_learned_models_return_dense_logits_at_the_input_resolution(name, pair):
    detector = build(name)
    a, b, _ = pair
    xa, xb = detector.preprocess([a, a]), detector.preprocess([b, b])
    assert xa.shape == (2, 3, SMALL_INPUT, SMALL_INPUT)
    assert xa.dtype == torch.float32
    assert xa.device == detector.device
    with torch.inference_mode():
        logits = detector.model(xa, xb)
    assert logits.shape == (2, 1, SMALL_INPUT, SMALL_INPUT)
    assert detector.info.weights == "random"
    assert detector.info.params == sum(p.numel() for p in detector.model.parameters())


@pytest.mark.parametrize("name", LEARNED)
def test_predict_batch_runs_one_forward_per_batch(name, rng):
    detector = build(name)
    assert isinstance(detector, LearnedDetector)
    calls = []
    handle = detector.inference.current().register_forward_hook(lambda *_: calls.append(1))  # the module that runs
    try:
        pairs = [changed_pair(rng)[:2] for _ in range(3)]
        detector.predict_batch(pairs)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_preprocess_normalises_with_imagenet_statistics():
    detector = build("siamese-unet")
    grey = np.full((SMALL_INPUT, SMALL_INPUT, 3), 128, np.uint8)
    x = detector.preprocess(grey)
    expected = (128 / 255 - np.array(detector.info.mean)) / np.array(detector.info.std)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, atol=1e-5)


def test_fc_siam_diff_accepts_sides_that_are_not_multiples_of_16():
    model = FCSiamDiff().eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 50, 70), torch.randn(1, 3, 50, 70))
    assert out.shape == (1, 1, 50, 70)


def test_compare_head_gives_one_logit_per_anchor_patch_smoothly_upsampled():
    model = CompareHeadNet(patch_size=16, patch_stride=8).eval()
    with torch.inference_mode():
        dense = model(torch.randn(1, 3, 40, 40), torch.randn(1, 3, 40, 40))
    assert dense.shape == (1, 1, 40, 40)
    # (40 - 16) / 8 + 1 = 4 anchors per side; the map is flat outside the anchor centres.
    assert torch.allclose(dense[0, 0, :8, :8], dense[0, 0, 8, 8])


def test_compare_head_scores_whole_pairs(pair):
    detector = build("resnet50-compare-head")
    a, b, _ = pair
    score = detector.predict_score(a, b)
    assert 0.0 <= score <= 1.0
    assert detector.last_image_score == score
    assert detector.predict_scores([(a, b), (b, a)])[0] == pytest.approx(score, abs=1e-5)


def test_ensemble_weights_select_members(pair):
    a, b, _ = pair
    only_ssim = create_detector("ensemble", members=["absdiff", "ssim"], member_weights=[0, 1])
    np.testing.assert_allclose(only_ssim.predict(a, b), build("ssim").predict(a, b), atol=1e-6)
    mean = create_detector("ensemble", members=["absdiff", "ssim"])
    expected = (build("absdiff").predict(a, b) + build("ssim").predict(a, b)) / 2
    np.testing.assert_allclose(mean.predict(a, b), expected, atol=1e-6)
    assert [m["name"] for m in mean.info.extra["members"]] == ["absdiff", "ssim"]


def test_ensemble_defaults_to_classical_members_without_trained_checkpoints():
    ensemble = create_detector("ensemble")
    assert [m.info.name for m in ensemble.members] == ["absdiff", "ssim"]
    assert ensemble.info.weights == "none"


def test_ensemble_rejects_bad_member_weights():
    with pytest.raises(ValueError, match="member_weights"):
        create_detector("ensemble", members=["absdiff", "ssim"], member_weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        create_detector("ensemble", members=["absdiff", "ssim"], member_weights=[1.0, -2.0])


def test_change_box_constant_matches_the_fixture():
    _, _, label = changed_pair(np.random.default_rng(0))
    assert label[CHANGE_BOX].all()
    assert label.sum() == label[CHANGE_BOX].size


def test_predict_runs_in_eval_mode_and_restores_the_training_mode(pair):
    a, b, _ = pair
    detector = build("siamese-unet")
    expected = detector.predict(a, b)
    detector.model.train()  # as a training loop leaves it: dropout and batch statistics on
    try:
        np.testing.assert_array_equal(detector.predict(a, b), expected)
        assert detector.model.training
    finally:
        detector.model.eval()


@pytest.mark.parametrize(("name", "channels", "stride"), [("siamese-unet", 64, 4), ("siamese-mobilenetv3", 24, 4)])
def test_siamese_networks_embed_patches_at_a_quarter_of_the_resolution(name, channels, stride):
    seed_everything(0)
    model = create_detector(name, weights=None, device="cpu").model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        embeddings = model.embed(x)
    assert embeddings.shape == (2, channels, 64 // stride, 96 // stride)
    assert torch.isfinite(embeddings).all()
    assert embeddings.flatten(1).norm(dim=1).min() > 0  # something to L2-normalise


def test_fc_siam_diff_embeddings_differ_where_the_images_differ():
    seed_everything(0)
    model = FCSiamDiff().eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[..., 40:, 40:] += 3.0
    with torch.no_grad():
        gap = (model.embed(x) - model.embed(y)).abs().sum(dim=1)[0]
    assert gap[:3, :3].max() == 0  # the 1/4-scale features have a local receptive field
    assert gap[12:, 12:].min() > 0
