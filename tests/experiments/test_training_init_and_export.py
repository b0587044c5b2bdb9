"""`train_detector --init auto|imagenet|scratch` and `--export-dtype fp16` (the shipped weights are made so)."""

import io

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from experiments.models import ModelCheckpoint, TrainingJob
from inference import create_detector
from inference.synthetic import generate_benchmark
from inference.training import train_detector
from inference.training.model_setup import starting_weights
from inference.weights import WeightsError, WeightsUnavailable, convert_checkpoint, load_checkpoint, save_checkpoint


@pytest.fixture
def empty_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def tiny_dataset(user):
    call_command("make_benchmark", "--name", "tiny", "--pairs", "8", "--size", "32", "--seed", "1",
                 "--user", user.username, stdout=io.StringIO())  # fmt: skip
    return "tiny"


@pytest.mark.django_db
def test_init_imagenet_without_the_backbone_file_stops_before_any_job(user, tiny_dataset, empty_torch_cache):
    with pytest.raises(CommandError) as error:
        call_command("train_detector", "siamese-resnet50", "--dataset", tiny_dataset, "--init", "imagenet",
                     "--user", user.username, stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    message = str(error.value)
    assert "resnet50-11ad3fa6.pth" in message and str(empty_torch_cache) in message and "scratch" in message
    assert not TrainingJob.objects.exists() and not ModelCheckpoint.objects.exists()


@pytest.mark.django_db
def test_fp16_export_is_half_the_size_names_its_source_and_predicts_like_the_fp32_checkpoint(
    user, tiny_dataset, tmp_path
):
    out = io.StringIO()
    call_command("train_detector", "siamese-unet", "--dataset", tiny_dataset, "--epochs", "1", "--size", "32",
                 "--batch-size", "4", "--init", "scratch", "--export", str(tmp_path / "unet.pt"),
                 "--export-dtype", "fp16", "--user", user.username, stdout=out, stderr=io.StringIO())  # fmt: skip
    checkpoint = ModelCheckpoint.objects.get()
    assert checkpoint.config["init"] == "scratch" and checkpoint.config["init_weights"] == "random"
    registered = tmp_path / "registered.pt"
    registered.write_bytes(_stored(checkpoint))
    state16, meta16, sha16 = load_checkpoint(tmp_path / "unet.pt")
    state32, meta32, sha32 = load_checkpoint(registered)
    assert sha32 == checkpoint.sha256 and sha16 != sha32 and sha16 in out.getvalue()
    assert meta16["converted_from"] == checkpoint.sha256 and meta16["dtype"] == "fp16"
    assert {k: v for k, v in meta16.items() if k not in ("converted_from", "dtype")} == meta32
    assert set(state16) == set(state32)
    for key, tensor in state32.items():
        expected = tensor.half() if tensor.is_floating_point() and "running_" not in key else tensor
        assert state16[key].dtype == expected.dtype and torch.equal(state16[key], expected), key
    assert 0.45 < (tmp_path / "unet.pt").stat().st_size / registered.stat().st_size < 0.55

    pair = generate_benchmark(1, size=32, seed=4)[0]
    full = create_detector("siamese-unet", weights=registered, device="cpu")
    half = create_detector("siamese-unet", weights=tmp_path / "unet.pt", device="cpu")
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert half.info.weights == f"checkpoint:{sha16}"
    difference = np.abs(full.predict(pair.a, pair.b) - half.predict(pair.a, pair.b))
    assert difference.max() < 1e-2


def _stored(checkpoint) -> bytes:
    from experiments import storage

    return storage.read_bytes(checkpoint.file_key)


def test_fp16_conversion_keeps_batchnorm_statistics_and_refuses_weights_that_overflow(tmp_path):
    # VGG16 has no BatchNorm before the decoder's: its running variances exceed fp16's 65504
    stats = {
        "bn.running_var": torch.tensor([1e6, 2.0]),
        "bn.running_mean": torch.tensor([0.1]),
        "bn.n": torch.tensor(3),
    }
    save_checkpoint(tmp_path / "stats.pt", {"w": torch.tensor([0.1]), **stats}, {"detector": "x"})
    convert_checkpoint(tmp_path / "stats.pt", tmp_path / "stats16.pt", "fp16")
    state = load_checkpoint(tmp_path / "stats16.pt")[0]
    assert state["w"].dtype == torch.float16 and state["bn.n"].dtype == torch.int64
    for key in ("bn.running_var", "bn.running_mean"):
        assert state[key].dtype == torch.float32 and torch.equal(state[key], stats[key]), key

    save_checkpoint(tmp_path / "big.pt", {"w": torch.tensor([1e6]), "n": torch.tensor(3)}, {"detector": "x"})
    with pytest.raises(WeightsError, match="does not fit in fp16"):
        convert_checkpoint(tmp_path / "big.pt", tmp_path / "half.pt", "fp16")
    assert not (tmp_path / "half.pt").exists()


def test_init_imagenet_fine_tunes_from_the_backbone_file(empty_torch_cache):
    from torchvision.models import mobilenet_v3_large

    torch.manual_seed(3)
    backbone = mobilenet_v3_large().state_dict()
    empty_torch_cache.mkdir(parents=True)
    torch.save(backbone, empty_torch_cache / "mobilenet_v3_large-8738ca79.pth")
    pairs = generate_benchmark(4, size=32, seed=1)
    result = train_detector("siamese-mobilenetv3", pairs[:2], pairs[2:], init="imagenet", epochs=1, size=32,
                            batch_size=2, lr=1e-9, device="cpu", patience=0)  # fmt: skip
    assert result.config["init_weights"] == "imagenet" and result.config["init"] == "imagenet"
    assert "mobilenet_v3_large-8738ca79.pth" in result.config["init_description"]
    # lr 1e-9: the trained backbone is still the file's (a random start would be far from it)
    first_conv = result.state_dict["stages.0.0.0.weight"]  # torchvision's features.0.0
    assert torch.allclose(first_conv, backbone["features.0.0.weight"], atol=1e-4)


def test_init_scratch_and_imagenet_refusals(empty_torch_cache):
    pairs = generate_benchmark(2, size=32, seed=1)
    with pytest.raises(WeightsUnavailable, match="nothing is downloaded"):
        train_detector("siamese-vgg16", pairs[:1], pairs[1:], init="imagenet", epochs=1, size=32, device="cpu")
    with pytest.raises(WeightsUnavailable, match="no ImageNet backbone"):
        train_detector("siamese-unet", pairs[:1], pairs[1:], init="imagenet", epochs=1, size=32, device="cpu")
    with pytest.raises(ValueError, match="contradict"):
        starting_weights("some.pt", "scratch")
    with pytest.raises(ValueError, match="unknown init"):
        starting_weights("auto", "pretrained")
    assert starting_weights("auto", "scratch") is None and starting_weights("some.pt", "auto") == "some.pt"
