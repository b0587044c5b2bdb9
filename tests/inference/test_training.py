import json

import numpy as np
import pytest
import torch

from inference.registry import create_detector
from inference.synthetic import generate_benchmark
from inference.training import (
    TrainingResult,
    bce_dice_loss,
    contrastive_patch_loss,
    describe_init,
    estimate_training_seconds,
    save_training_checkpoint,
    train_detector,
)
from inference.weights import load_checkpoint

SIZE = 64


@pytest.fixture(scope="module")
def pairs():
    benchmark = generate_benchmark(16, size=SIZE, seed=1)
    return benchmark[:12], benchmark[12:]


def _train(pairs, **options):
    train, val = pairs
    settings = {"epochs": 2, "size": SIZE, "batch_size": 4, "device": "cpu", "patience": 0}
    return train_detector("siamese-unet", train, val, **{**settings, **options})


def _without_timings(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "eta_s")} for h in history]


def test_it_reduces_the_loss_on_a_tiny_set(pairs):
    train, _ = pairs
    result = _train((train, train), epochs=3, lr=3e-3)
    losses = [h["val_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert isinstance(result, TrainingResult)
    assert set(result.state_dict) == set(create_detector("siamese-unet", weights=None).model.state_dict())


def test_it_records_history_and_a_json_safe_config(pairs):
    result = _train(pairs)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert {"train_loss", "val_loss", "val_f1", "val_iou", "seconds", "eta_s"} <= set(result.history[0])
    config = json.loads(json.dumps(result.config))
    assert config["seed"] == 0
    assert config["loss"] == "bce-dice"
    assert config["size"] == SIZE
    assert config["epochs_requested"] == 2
    assert config["epochs_run"] == 2
    assert config["init_weights"] == "random"
    assert 1 <= result.best_epoch <= 2
    assert result.val_metrics["f1"] == result.history[result.best_epoch - 1]["val_f1"]


def test_it_repeats_exactly_with_the_same_seed(pairs):
    first = _train(pairs, seed=4)
    second = _train(pairs, seed=4)
    assert _without_timings(first.history) == _without_timings(second.history)
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)


def test_it_reports_progress_within_and_after_epochs(pairs):
    events = []
    _train(pairs, epochs=3, on_progress=events.append)
    epochs = [e["epoch"] for e in events if e["stage"] == "epoch"]
    assert epochs == [1, 2, 3]
    batches = [e for e in events if e["stage"] == "train"]
    assert batches
    assert all({"batch", "batches", "loss", "eta_s", "val_f1"} <= set(e) for e in batches)
    assert [e["epoch"] for e in batches] == sorted(e["epoch"] for e in batches)


def test_it_stops_early_when_validation_f1_plateaus(pairs):
    result = _train(pairs, epochs=6, lr=0.0, patience=1)
    assert result.stopped_early
    assert result.config["epochs_run"] == 2
    assert result.best_epoch == 1


def test_should_stop_cancels_training(pairs):
    calls = []

    def stop_after_two_batches():
        calls.append(1)
        return len(calls) > 2

    result = _train(pairs, epochs=5, should_stop=stop_after_two_batches)
    assert result.cancelled
    assert result.config["epochs_run"] == 0
    assert result.state_dict  # the weights so far are still returned


def test_checkpoint_round_trips_and_reproduces_predictions(pairs, tmp_path):
    result = _train(pairs, epochs=1)
    path = tmp_path / "unet.pt"
    sha256 = save_training_checkpoint(result, path, detector="siamese-unet", dataset_name="tiny")
    _state_dict, meta, file_sha = load_checkpoint(path)
    assert file_sha == sha256
    assert meta["dataset"] == "tiny"
    assert meta["input_size"] == SIZE
    assert meta["history"][0]["epoch"] == 1

    loaded = create_detector("siamese-unet", weights=path, device="cpu")
    assert loaded.info.weights == f"checkpoint:{sha256}"
    assert loaded.info.input_size == SIZE
    reference = create_detector("siamese-unet", weights=None, device="cpu", input_size=SIZE)
    reference.model.load_state_dict(result.state_dict)
    pair = pairs[1][0]
    assert np.allclose(loaded.predict(pair.a, pair.b), reference.predict(pair.a, pair.b), atol=1e-6)


def test_it_trains_a_torchvision_backbone_detector(pairs):
    train, val = pairs
    result = train_detector(
        "siamese-mobilenetv3", train[:4], val[:2], epochs=1, size=SIZE, batch_size=4,
        device="cpu", init_weights=None,
    )  # fmt: skip
    assert result.config["epochs_run"] == 1
    assert np.isfinite(result.history[0]["train_loss"])


def test_triplet_loss_trains_the_siamese_unet(pairs):
    result = _train(pairs, loss="triplet")
    assert result.config["loss"] == "triplet"
    assert "contrastive" in result.config
    assert all(np.isfinite(h["train_loss"]) for h in result.history)


def test_triplet_loss_trains_the_siamese_mobilenet(pairs):
    train, val = pairs
    result = train_detector(
        "siamese-mobilenetv3", train[:4], val[:2], epochs=1, size=SIZE, batch_size=4,
        device="cpu", init_weights=None, loss="triplet",
    )  # fmt: skip
    assert result.config["loss"] == "triplet"
    assert np.isfinite(result.history[0]["train_loss"])


def test_validation_scores_at_the_best_threshold_and_at_one_half(pairs):
    result = _train(pairs, epochs=1)
    val = result.val_metrics
    assert 0.0 <= val["threshold"] <= 1.0
    assert val["f1"] >= val["f1_at_0.5"] - 1e-9
    assert val["tp"] + val["fp"] + val["fn"] + val["tn"] == 4 * SIZE * SIZE


def test_triplet_loss_refuses_a_network_without_embeddings(pairs, monkeypatch):
    from inference.detectors.unet import FCSiamDiff

    monkeypatch.delattr(FCSiamDiff, "embed", raising=False)
    with pytest.raises(ValueError, match="only for Siamese"):
        _train(pairs, loss="triplet")


def test_it_rejects_classical_detectors_and_unknown_losses(pairs):
    with pytest.raises(ValueError, match="classical"):
        train_detector("absdiff", *pairs, epochs=1, size=SIZE)
    with pytest.raises(ValueError, match="unknown loss"):
        _train(pairs, loss="hinge")


def test_it_names_an_unknown_option_instead_of_ignoring_it(pairs):
    with pytest.raises(TypeError, match=r"unknown training option.*epoch;"):
        train_detector("siamese-unet", *pairs, epoch=1, size=SIZE)


def test_it_accepts_tuples_and_crops_larger_images(pairs):
    rng = np.random.default_rng(0)
    big = [
        (rng.integers(0, 255, (96, 96, 3), np.uint8), rng.integers(0, 255, (96, 96, 3), np.uint8),
         (rng.random((96, 96)) > 0.9).astype(np.uint8) * 255)
        for _ in range(4)
    ]  # fmt: skip
    result = train_detector("siamese-unet", big, big[:1], epochs=1, size=SIZE, batch_size=2, device="cpu")
    assert result.config["val_tiles"] == 1
    assert np.isfinite(result.history[0]["val_loss"])


def test_contrastive_loss_is_low_for_matching_unchanged_embeddings():
    torch.manual_seed(0)
    embed = torch.randn(2, 8, 4, 4)
    no_change = torch.zeros(2, 1, 16, 16)
    all_change = torch.ones(2, 1, 16, 16)
    assert contrastive_patch_loss(embed, embed, no_change) == pytest.approx(0.0, abs=1e-6)
    assert contrastive_patch_loss(embed, embed, all_change) == pytest.approx(0.5, abs=1e-4)
    assert contrastive_patch_loss(embed, -embed, all_change) == pytest.approx(0.0, abs=1e-6)


def test_bce_dice_prefers_the_right_map():
    label = torch.zeros(1, 1, 8, 8)
    label[..., 2:5, 2:5] = 1
    right = (label * 2 - 1) * 6
    assert bce_dice_loss(right, label) < bce_dice_loss(-right, label)


def test_init_description_and_time_estimate_are_usable():
    assert "random" in describe_init("siamese-unet")
    assert "mobilenet_v3_large" in describe_init("siamese-mobilenetv3")
    before = torch.random.get_rng_state()
    assert estimate_training_seconds("siamese-unet", n_pairs=10, epochs=2, size=SIZE, device="cpu") > 0
    assert torch.equal(before, torch.random.get_rng_state())


def test_training_samples_warp_a_only_and_keep_b_and_the_label(pairs, monkeypatch):
    from inference.training import data

    triple = data.as_triple(pairs[0][0])
    monkeypatch.setattr(data, "WARP_PROBABILITY", 0.0)
    plain = data.training_sample(triple, np.random.default_rng(5), SIZE)
    monkeypatch.setattr(data, "WARP_PROBABILITY", 1.0)
    warped = data.training_sample(triple, np.random.default_rng(5), SIZE)
    assert np.array_equal(plain[1], warped[1])
    assert np.array_equal(plain[2], warped[2])
    assert np.abs(plain[0].astype(int) - warped[0].astype(int)).mean() > 2


def test_the_public_names_stay_importable_from_inference_training():
    import inference.training as training

    for name in ("TrainingResult", "train_detector", "save_training_checkpoint", "describe_init",
                 "estimate_training_seconds", "bce_dice_loss", "contrastive_patch_loss", "LOSSES"):  # fmt: skip
        assert hasattr(training, name), name
    assert set(training.__all__) <= set(dir(training))
