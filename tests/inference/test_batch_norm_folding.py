"""BatchNorm folded into the convolution before it for inference (`inference.runtime.InferenceModule`):
the same outputs as the model itself, no BatchNorm left to run, and never stale after the weights change."""

import numpy as np
import pytest
import torch

from inference import create_detector
from inference.catalogue import catalogue_entry
from inference.registry import list_detectors
from inference.runtime import RuntimeOptions, seed_everything

LEARNED = [name for name in list_detectors() if catalogue_entry(name).learned]
SIZE = 64


def _pairs(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8), rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8))
            for _ in range(count)]  # fmt: skip


def _unfolded_maps(detector, pairs) -> np.ndarray:
    """The model's own eval-mode outputs: torch's BatchNorm, nothing folded."""
    xa = detector.preprocess([a for a, _ in pairs])
    xb = detector.preprocess([b for _, b in pairs])
    detector.model.eval()
    with torch.inference_mode():
        return torch.sigmoid(detector.model(xa, xb))[:, 0].numpy()


@pytest.mark.parametrize("name", LEARNED)
def test_folded_inference_equals_the_model_and_runs_no_batch_norm(name):
    seed_everything(0)
    detector = create_detector(name, weights="random", device="cpu", input_size=SIZE)
    pairs = _pairs()
    maps = np.stack(detector.predict_batch(pairs))
    np.testing.assert_allclose(maps, _unfolded_maps(detector, pairs), atol=2e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.model.modules())  # the model keeps its own
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.inference.current().modules())


@pytest.mark.parametrize("change", ["training step", "loaded weights", "new parameter", "swapped data"])
def test_the_folded_copy_follows_the_weights(change):
    seed_everything(0)
    detector = create_detector("siamese-mobilenetv3", weights="random", device="cpu", input_size=SIZE)
    pairs = _pairs()
    before = np.stack(detector.predict_batch(pairs))
    if change == "training step":
        detector.model.train()
        xa, xb = detector.preprocess([a for a, _ in pairs]), detector.preprocess([b for _, b in pairs])
        optimiser = torch.optim.SGD(detector.model.parameters(), lr=0.5)
        detector.model(xa, xb).mean().backward()  # also moves BatchNorm's running statistics
        optimiser.step()
    elif change == "loaded weights":
        seed_everything(1)
        other = create_detector("siamese-mobilenetv3", weights="random", device="cpu", input_size=SIZE)
        detector.model.load_state_dict(other.model.state_dict())
    else:
        conv = next(m for m in detector.model.modules() if isinstance(m, torch.nn.Conv2d))
        weights = torch.randn_like(conv.weight)
        if change == "new parameter":  # a new tensor object registered on the module
            conv.weight = torch.nn.Parameter(weights)
        else:  # the same parameter over other storage: no version counter moves
            conv.weight.data = weights
    after = np.stack(detector.predict_batch(pairs))
    assert np.abs(after - before).max() > 1e-3  # the change shows
    np.testing.assert_allclose(after, _unfolded_maps(detector, pairs), atol=2e-5)


def test_folding_can_be_turned_off():
    seed_everything(0)
    detector = create_detector("siamese-unet", weights="random", device="cpu", input_size=SIZE,
                               options=RuntimeOptions(fold_batch_norm=False))  # fmt: skip
    pairs = _pairs()
    np.testing.assert_allclose(np.stack(detector.predict_batch(pairs)), _unfolded_maps(detector, pairs), atol=1e-6)
    assert detector.inference.current() is detector.model
