import hashlib
import pickle

import numpy as np
import pytest
import torch

from inference import weights as weights_io
from inference.registry import create_detector, detector_info
from inference.runtime import seed_everything
from inference.weights import (
    WeightsError,
    WeightsUnavailable,
    imagenet_filenames,
    load_checkpoint,
    resolve_weights,
    save_checkpoint,
    set_checkpoint_resolver,
)

UNET = "siamese-unet"


class NotATensor:
    """A pickled object of this class must never be unpickled by the platform."""

    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def unet_checkpoint(path, *, detector=UNET, seed=3, **meta):
    seed_everything(seed)
    model = create_detector(UNET, weights=None, device="cpu").model
    sha = save_checkpoint(path, model.state_dict(), {"detector": detector, **meta})
    return model, sha


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_auto_raises_unavailable_with_instructions_when_nothing_exists(isolated_weights):
    with pytest.raises(WeightsUnavailable) as caught:
        create_detector("siamese-mobilenetv3", weights="auto", device="cpu")
    message = str(caught.value)
    assert "python manage.py train_detector siamese-mobilenetv3 --dataset" in message
    expected = isolated_weights / "hub" / "checkpoints" / imagenet_filenames("mobilenet_v3_large")[0]
    assert str(expected) in message


def test_weights_none_is_random_initialisation():
    detector = create_detector(UNET, weights=None, device="cpu")
    assert detector.info.weights == "random"
    assert detector.info.weights_sha256 is None


def test_classical_detectors_report_no_weights():
    info = create_detector("absdiff").info
    assert (info.weights, info.weights_sha256, info.learned) == ("none", None, False)


def test_it_loads_a_checkpoint_path_and_records_its_sha256(tmp_path, pair):
    path = tmp_path / "unet.pt"
    model, sha = unet_checkpoint(path, input_size=48)
    assert sha == sha256_of(path)
    detector = create_detector(UNET, weights=str(path), device="cpu")
    assert detector.info.weights == f"checkpoint:{sha}"
    assert detector.info.weights_sha256 == sha
    assert detector.info.input_size == 48  # taken from the checkpoint's meta
    for key, value in model.state_dict().items():
        assert torch.equal(detector.model.state_dict()[key], value)


def test_load_checkpoint_returns_state_meta_and_sha(tmp_path):
    path = tmp_path / "unet.pt"
    model, sha = unet_checkpoint(path, epochs=2, dataset="levir")
    state_dict, meta, loaded_sha = load_checkpoint(path)
    assert loaded_sha == sha
    assert meta == {"detector": UNET, "epochs": 2, "dataset": "levir"}
    assert set(state_dict) == set(model.state_dict())


def test_it_refuses_a_checkpoint_saved_for_another_detector(tmp_path):
    path = tmp_path / "unet.pt"
    unet_checkpoint(path, detector="siamese-vgg16")
    with pytest.raises(WeightsError, match="saved for detector 'siamese-vgg16'"):
        create_detector(UNET, weights=path, device="cpu")


def test_it_names_missing_and_misshapen_keys(tmp_path):
    model = create_detector(UNET, weights=None, device="cpu").model
    state = dict(model.state_dict())
    first_key = next(iter(state))
    del state[first_key]
    state["decoder.3.1.weight"] = torch.zeros(1, 16, 5, 5)
    path = tmp_path / "broken.pt"
    save_checkpoint(path, state, {"detector": UNET})
    with pytest.raises(WeightsError) as caught:
        create_detector(UNET, weights=path, device="cpu")
    assert first_key in str(caught.value)
    assert "decoder.3.1.weight" in str(caught.value)


def test_it_refuses_a_pickle_holding_arbitrary_objects(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump(
            {"state_dict": {}, "meta": {"detector": UNET}, "payload": NotATensor()},
            handle,
            protocol=2,
        )
    with pytest.raises(WeightsError, match="weights_only"):
        load_checkpoint(path)
    with pytest.raises(WeightsError):
        create_detector(UNET, weights=path, device="cpu")
    assert "arbitrary code" not in capsys.readouterr().out


def test_it_refuses_a_torch_save_of_a_whole_module(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"state_dict": torch.nn.Linear(2, 2), "meta": {"detector": UNET}}, path)
    with pytest.raises(WeightsError):
        load_checkpoint(path)


def test_it_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="not a diffplatform checkpoint"):
        load_checkpoint(path)


def test_it_reports_a_missing_checkpoint_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_detector(UNET, weights=tmp_path / "absent.pt", device="cpu")


def test_save_checkpoint_requires_json_safe_meta_naming_the_detector(tmp_path):
    state = {"w": torch.zeros(2)}
    with pytest.raises(WeightsError, match="name the detector"):
        save_checkpoint(tmp_path / "a.pt", state, {"epochs": 1})
    with pytest.raises(WeightsError, match="JSON-safe"):
        save_checkpoint(tmp_path / "b.pt", state, {"detector": UNET, "when": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_safetensors_checkpoints_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "unet.safetensors"
    model, sha = unet_checkpoint(path, epochs=1)
    _state_dict, meta, loaded_sha = load_checkpoint(path)
    assert (meta, loaded_sha) == ({"detector": UNET, "epochs": 1}, sha)
    detector = create_detector(UNET, weights=path, device="cpu")
    assert detector.info.weights == f"checkpoint:{sha}"
    key = "encoder.0.0.0.weight"
    assert torch.equal(detector.model.state_dict()[key], model.state_dict()[key])


def test_auto_uses_the_registered_resolver(tmp_path):
    path = tmp_path / "platform.pt"
    _, sha = unet_checkpoint(path)
    asked = []

    def resolver(name):
        asked.append(name)
        return path if name == UNET else None

    set_checkpoint_resolver(resolver)
    detector = create_detector(UNET, weights="auto", device="cpu")
    assert detector.info.weights == f"checkpoint:{sha}"
    assert asked == [UNET]
    assert detector_info(UNET).weights == f"checkpoint:{sha}"
    with pytest.raises(WeightsUnavailable):
        create_detector("siamese-mobilenetv3", weights="auto", device="cpu")


def test_an_explicit_path_wins_over_the_resolver(tmp_path):
    resolved, _ = tmp_path / "resolved.pt", unet_checkpoint(tmp_path / "resolved.pt", seed=1)
    _, explicit_sha = unet_checkpoint(tmp_path / "explicit.pt", seed=2)
    set_checkpoint_resolver(lambda name: resolved)
    source = resolve_weights(UNET, tmp_path / "explicit.pt")
    assert source.provenance == f"checkpoint:{explicit_sha}"


def test_the_ensemble_adds_learned_members_that_have_trained_checkpoints(tmp_path, pair):
    path = tmp_path / "platform.pt"
    unet_checkpoint(path)
    set_checkpoint_resolver(lambda name: path if name == UNET else None)
    ensemble = create_detector("ensemble", device="cpu")
    assert [m.info.name for m in ensemble.members] == ["absdiff", "ssim", UNET]
    assert ensemble.info.weights == "mixed"
    a, b, _ = pair
    assert ensemble.predict(a, b).shape == b.shape[:2]


def write_fake_imagenet_mobilenet(cache_root):
    """A randomly initialised torchvision MobileNetV3-Large saved under torchvision's name."""
    from torchvision.models import mobilenet_v3_large

    seed_everything(11)
    state = mobilenet_v3_large(weights=None).state_dict()
    checkpoints = cache_root / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    path = checkpoints / imagenet_filenames("mobilenet_v3_large")[0]
    torch.save(state, path)
    return state, path


def test_auto_loads_imagenet_backbone_weights_from_the_torch_cache(isolated_weights, pair):
    state, path = write_fake_imagenet_mobilenet(isolated_weights)
    detector = create_detector("siamese-mobilenetv3", weights="auto", device="cpu", input_size=64)
    info = detector.info
    assert info.weights == "imagenet"
    assert info.weights_sha256 == sha256_of(path)
    assert info.extra["decoder"] == "random"
    loaded = detector.model.stages[0][0][0].weight
    assert torch.equal(loaded, state["features.0.0.weight"])
    assert detector_info("siamese-mobilenetv3").weights == "imagenet"
    a, b, _ = pair
    assert detector.predict(a, b).shape == b.shape[:2]


def test_a_corrupt_imagenet_file_is_refused(isolated_weights):
    checkpoints = isolated_weights / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / imagenet_filenames("mobilenet_v3_large")[0]).write_bytes(b"not a zip file")
    with pytest.raises(WeightsError):
        create_detector("siamese-mobilenetv3", weights="auto", device="cpu")


def test_imagenet_file_names_come_from_torchvision():
    assert "resnet50-11ad3fa6.pth" in imagenet_filenames("resnet50")
    assert imagenet_filenames("vgg16") == ["vgg16-397923af.pth"]
    assert imagenet_filenames("mobilenet_v3_large")[0].startswith("mobilenet_v3_large-")


def test_weights_module_is_the_only_loader(tmp_path):
    # Saving twice gives the same sha for the same tensors (sha identifies the weights).
    state = {"w": torch.arange(4.0)}
    first = save_checkpoint(tmp_path / "x.pt", state, {"detector": UNET})
    second = save_checkpoint(tmp_path / "y.pt", state, {"detector": UNET})
    assert first == second
    assert np.array_equal(load_checkpoint(tmp_path / "x.pt")[0]["w"].numpy(), np.arange(4.0))
    assert weights_io.file_sha256(tmp_path / "x.pt") == first


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    import json
    import struct

    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    ("header", "data", "words"),
    [  # the header's declared sizes must account for the file exactly: nothing larger is ever allocated
        ({"w": {"dtype": "F32", "shape": [1000000, 1000], "data_offsets": [0, 16]}}, bytes(16), "declares"),
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(32), "add up to"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16), "overlap or leave gaps"),
        ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16), "no valid dtype"),
        ({"w": {"dtype": "X99", "shape": [4], "data_offsets": [0, 16]}}, bytes(16), "no valid dtype"),
        ({"w": [1, 2]}, bytes(16), "no valid dtype"),
    ],
)
def test_a_safetensors_file_whose_header_does_not_account_for_it_is_refused(tmp_path, header, data, words):
    path = tmp_path / "w.safetensors"
    path.write_bytes(_safetensors_bytes({"__metadata__": {"meta": '{"detector": "siamese-unet"}'}, **header}, data))
    with pytest.raises(WeightsError, match=words):
        load_checkpoint(path)


def test_a_resolved_source_is_loaded_under_its_own_provenance(tmp_path):
    seed_everything(0)
    detector = create_detector(UNET, weights=None, device="cpu", input_size=32)
    path = tmp_path / "copy.safetensors"
    save_checkpoint(path, detector.model.state_dict(), {"detector": UNET})
    source = weights_io.WeightsSource("checkpoint", path, "ab" * 32)  # the uploaded file's sha256, not the copy's
    loaded = create_detector(UNET, weights=source, device="cpu", input_size=32)
    assert loaded.info.weights == f"checkpoint:{'ab' * 32}" and loaded.info.weights_sha256 == "ab" * 32
    for key, tensor in detector.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], tensor)
