"""Tiled inference (`inference.tiling`): coverage, blending, bounded memory, and what it gains on real data."""

import json
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inference.cli import main as cli_main
from inference.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorInfo, match_size
from inference.detectors.learned import LearnedDetector
from inference.registry import create_detector
from inference.runtime import RuntimeOptions
from inference.tiling import AUTO_TILE_FACTOR, Scaling, TileGrid, tiled_map, window_starts
from tests.inference.conftest import textured_image
from tests.shared_data import shared_folder

SHIPPED_UNET = Path(__file__).resolve().parents[2] / "weights" / "siamese-unet.pt"


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize(("height", "width", "size"), [(64, 64, 64), (300, 200, 64), (129, 1000, 128), (40, 90, 64)])
def test_the_windows_cover_every_pixel_with_weights_summing_to_one(height, width, size, overlap):
    grid = TileGrid.plan(height, width, size, overlap)
    total = np.zeros((grid.height, grid.width), np.float64)
    covered = np.zeros((grid.height, grid.width), np.int64)
    for top, left, weight in grid.windows():
        assert top >= 0 and top + size <= grid.height and left >= 0 and left + size <= grid.width
        assert weight.shape == (size, size) and (weight > 0).all()
        total[top : top + size, left : left + size] += weight
        covered[top : top + size, left : left + size] += 1
    assert (covered >= 1).all()
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert (grid.height, grid.width) == (max(height, size), max(width, size))


def test_windows_step_by_the_overlap_and_the_last_one_is_shifted_inside():
    assert window_starts(256, 128, 0.0) == [0, 128]
    assert window_starts(300, 128, 0.0) == [0, 128, 172]
    assert window_starts(300, 128, 0.25) == [0, 96, 172]
    assert window_starts(100, 128, 0.25) == [0]


def test_without_overlap_the_windows_are_stitched_with_weight_one():
    grid = TileGrid.plan(256, 384, 128, 0.0)
    assert len(grid) == 6
    assert all(np.array_equal(weight, np.ones((128, 128), np.float32)) for _, _, weight in grid.windows())


# --------------------------------------------------------------------------- blending
def pointwise_change(tiles) -> np.ndarray:
    """A map that depends on each pixel alone: tiling must give back exactly the whole-image map."""
    return np.stack([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2) / 255.0 for a, b in tiles])


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize(("height", "width"), [(300, 500), (64, 64), (50, 130)])
def test_a_pointwise_map_is_the_same_tiled_as_whole(rng, height, width, overlap):
    a, b = textured_image(rng, height, width), textured_image(rng, height, width)
    tiled = tiled_map(a, b, size=64, predict_tiles=pointwise_change, overlap=overlap, tile_batch=3)
    assert tiled.shape == (height, width) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, pointwise_change([(a, b)])[0], atol=1e-5)


def test_overlapping_windows_are_blended_not_overwritten():
    """Each window reports a constant: inside an overlap the blend lies strictly between the two."""
    a = b = np.zeros((64, 112, 3), np.uint8)
    calls = iter(range(100))
    values = {}

    def constant(tiles):
        out = []
        for _ in tiles:
            values[len(values)] = float(next(calls) % 2)  # windows alternate 0, 1 along the row
            out.append(np.full((64, 64), values[len(values) - 1], np.float32))
        return np.stack(out)

    blended = tiled_map(a, b, size=64, predict_tiles=constant, overlap=0.25, tile_batch=8)
    starts = window_starts(112, 64, 0.25)
    assert starts == [0, 48]
    assert blended[0, 0] == 0.0 and blended[0, -1] == 1.0
    seam = blended[0, 48:64]
    assert (np.diff(seam) > 0).all() and seam.min() > 0 and seam.max() < 1


# --------------------------------------------------------------------------- memory
def test_only_one_batch_of_windows_is_held_at_a_time(rng):
    a, b = textured_image(rng, 400, 400), textured_image(rng, 400, 400)
    earlier: list[weakref.ref] = []
    batch_sizes, alive_at_call = [], []

    def watching(tiles):
        alive_at_call.append(sum(ref() is not None for ref in earlier))
        batch_sizes.append(len(tiles))
        earlier.extend(weakref.ref(crop) for pair in tiles for crop in pair)
        return pointwise_change(tiles)

    tiled_map(a, b, size=64, predict_tiles=watching, overlap=0.25, tile_batch=4)
    windows = len(TileGrid.plan(400, 400, 64, 0.25))
    assert sum(batch_sizes) == windows and max(batch_sizes) == 4 and len(batch_sizes) == -(-windows // 4)
    assert alive_at_call == [0] * len(batch_sizes)  # no window of an earlier batch is still held


class PointwiseNet(nn.Module):
    """|xa - xb| through a 1x1 convolution: translation-equivariant with no border effects."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv2d(3, 1, kernel_size=1)
        with torch.no_grad():
            self.mix.weight.fill_(1.5)
            self.mix.bias.fill_(-2.0)

    def forward(self, xa, xb):
        return self.mix(torch.abs(xa - xb))


def pointwise_detector(input_size=64, scaling=None) -> LearnedDetector:
    info = DetectorInfo(
        name="pointwise", family="siamese", learned=True, params=4, input_size=input_size, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, weights="random", weights_sha256=None, device="cpu",
    )  # fmt: skip
    return LearnedDetector(
        info=info, model=PointwiseNet(), device=torch.device("cpu"), options=RuntimeOptions(), scaling=scaling
    )


def full_resolution_map(detector: LearnedDetector, a, b) -> np.ndarray:
    """The network on the whole pair at B's own size (normalised here, not by the detector): what tiling
    should reproduce."""
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)

    def tensor(image):
        return torch.from_numpy((image.astype(np.float32) / 255.0 - mean) / std).permute(2, 0, 1)[None]

    with torch.inference_mode():
        return torch.sigmoid(detector.model(tensor(match_size(a, b)), tensor(b)))[0, 0].numpy()


def test_a_translation_equivariant_network_gives_the_same_map_tiled_as_whole(rng):
    detector = pointwise_detector(scaling=Scaling("tile", overlap=0.25, tile_batch=5))
    a, b = textured_image(rng, 200, 260), textured_image(rng, 256, 256)  # A is resized to B's size first
    tiled = detector.predict(a, b)
    np.testing.assert_allclose(tiled, full_resolution_map(detector, a, b), atol=1e-5)
    resized = pointwise_detector(scaling="resize").predict(a, b)
    assert np.abs(resized - tiled).max() > 0.05  # the resized map is not the full-resolution one


def test_the_network_never_sees_more_than_one_tile_batch(rng):
    detector = pointwise_detector(scaling=Scaling("tile", tile_batch=3))
    seen = []
    handle = detector.inference.current().register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[0]))
    try:
        detector.predict(textured_image(rng, 300, 300), textured_image(rng, 300, 300))
    finally:
        handle.remove()
    assert max(seen) == 3 and sum(seen) == len(TileGrid.plan(300, 300, 64, 0.25))


# --------------------------------------------------------------------------- the choice per pair
def test_auto_tiles_only_pairs_more_than_twice_the_input_size(rng):
    detector = pointwise_detector(input_size=64)  # the default: auto
    assert detector.scaling.mode == "auto" and detector.info.extra["scaling"]["mode"] == "auto"
    assert "2x the input size" in detector.info.extra["scaling"]["rule"]
    limit = AUTO_TILE_FACTOR * 64
    assert not detector.scaling.tiles(limit, limit, 64) and detector.scaling.tiles(limit + 1, 10, 64)
    calls = []
    handle = detector.inference.current().register_forward_hook(
        lambda _m, inputs, _o: calls.append(inputs[0].shape[-2:])
    )
    try:
        small = (textured_image(rng, limit, limit), textured_image(rng, limit, limit))
        large = (textured_image(rng, 100, limit + 1), textured_image(rng, 100, limit + 1))
        maps = detector.predict_batch([small, large, small])
    finally:
        handle.remove()
    assert [m.shape for m in maps] == [(limit, limit), (100, limit + 1), (limit, limit)]
    assert calls[0] == (64, 64) and len(calls) == 2  # the two small pairs in one resized batch, then the large
    np.testing.assert_allclose(maps[1], full_resolution_map(detector, *large), atol=1e-5)


def test_an_unknown_scaling_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="auto, resize, tile"):
        create_detector("siamese-unet", weights=None, device="cpu", input_size=32, scaling="zoom")
    with pytest.raises(ValueError, match="auto, resize, tile"):
        create_detector("absdiff", scaling="zoom")
    with pytest.raises(ValueError, match="overlap"):
        Scaling("tile", overlap=0.9)


def test_the_ensemble_passes_the_scaling_to_its_learned_members():
    ensemble = create_detector(
        "ensemble", weights=None, device="cpu", members=["absdiff", {"name": "siamese-unet", "input_size": 32}],
        scaling="tile",
    )  # fmt: skip
    absdiff, unet = ensemble.members
    assert unet.scaling.mode == "tile" and not hasattr(absdiff, "scaling")
    records = {m["name"]: m for m in ensemble.info.extra["members"]}
    assert records["siamese-unet"]["scaling"]["mode"] == "tile" and "scaling" not in records["absdiff"]


def test_the_cli_takes_scaling_and_says_whether_the_pair_was_tiled(pair_files, tmp_path, capsys):
    files, _ = pair_files
    a, b = files["a"], files["b"]
    out = tmp_path / "out"
    args = ["diff", str(a), str(b), "--detector", "siamese-unet", "--weights", "random", "--device", "cpu"]
    assert cli_main([*args, "--scaling", "tile", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tiled"] is True and summary["detector"]["extra"]["scaling"]["mode"] == "tile"
    assert cli_main([*args, "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["tiled"] is False  # 64x80 at 256 px: auto resizes
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*args, "--scaling", "zoom", "--out", str(out)])
    assert exit_info.value.code == 2 and "auto" in capsys.readouterr().err


# --------------------------------------------------------------------------- real data
def pooled_f1(detector, triples, threshold=0.5) -> float:
    """Change-class F1 at `threshold` from one confusion matrix over the pairs (scikit-learn's)."""
    from sklearn.metrics import f1_score

    labels = np.concatenate([label.ravel() for *_, label in triples])
    predicted = np.concatenate([(detector.predict(a, b) >= threshold).ravel() for a, b, _ in triples])
    return f1_score(labels, predicted)


def test_the_shipped_unet_finds_more_change_on_real_1024_px_tiles_when_tiled():
    """LEVIR-CD 1024 px tiles with the U-Net trained at 128 px: judged at 1/8 scale when resized."""
    tiles = shared_folder("levir_cd_scm_samples")
    from inference.images import load_image, load_mask

    names = sorted(p.name for p in (tiles / "B").glob("*.png"))
    triples = [
        (load_image(tiles / "A" / n), load_image(tiles / "B" / n), load_mask(tiles / "label" / n)[0]) for n in names
    ]
    assert triples and triples[0][1].shape[:2] == (1024, 1024)
    detector = create_detector("siamese-unet", weights=SHIPPED_UNET, device="cpu", scaling="resize")
    assert detector.info.input_size == 128
    resized = pooled_f1(detector, triples)
    tiled = pooled_f1(detector.set_scaling("auto"), triples)  # 1024 > 2 x 128: auto tiles these
    assert tiled > resized, (tiled, resized)
