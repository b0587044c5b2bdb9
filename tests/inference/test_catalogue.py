"""The torch-free catalogue is a view of the registry, and its facts agree with torchvision."""

import pytest

from inference import catalogue
from inference.registry import detector_info, get_spec, list_detectors
from inference.weights import imagenet_cache_dir, imagenet_filenames


def test_catalogue_names_equal_the_registry():
    assert catalogue.catalogue_names() == list_detectors()
    assert list(catalogue.catalogue_entries()) == list_detectors()


@pytest.mark.parametrize("name", list_detectors())
def test_every_entry_is_the_registered_spec(name):
    spec, entry = get_spec(name), catalogue.catalogue_entry(name)
    assert entry == catalogue.catalogue_entries()[name]
    assert (entry.name, entry.family, entry.learned) == (spec.name, spec.family, spec.learned)
    assert (entry.description, entry.relative_cost) == (spec.description, spec.relative_cost)
    assert (entry.input_size, entry.params) == (spec.input_size, spec.params)
    # its queue is the platform's plan's: tests/experiments/test_detector_plan.py


def test_learned_flags_and_families_equal_the_registry():
    for name in list_detectors():
        info = detector_info(name)
        assert catalogue.catalogue_entry(name).learned == info.learned
        assert catalogue.catalogue_entry(name).family == info.family
        assert catalogue.catalogue_entry(name).input_size == info.input_size
        assert catalogue.catalogue_entry(name).params == info.params


def test_an_entry_as_a_dict_has_every_field():
    data = catalogue.catalogue_entry("siamese-unet").facts()
    assert data == {
        "name": "siamese-unet",
        "family": "siamese",
        "learned": True,
        "description": get_spec("siamese-unet").description,
        "relative_cost": 25,
        "input_size": 256,
        "params": 1_350_001,
    }  # with its queue ("gpu"; absdiff's "cpu"): tests/experiments/test_detector_plan.py


def test_an_unknown_name_is_a_key_error_listing_the_known_ones():
    with pytest.raises(KeyError) as caught:
        catalogue.catalogue_entry("no-such-detector")
    assert "no-such-detector" in str(caught.value)
    assert "siamese-unet" in str(caught.value)


def test_the_compatibility_mapping_equals_the_entries():
    assert catalogue.catalogue_entries() == catalogue.BUILTIN_DETECTORS
    with pytest.raises(AttributeError):
        _ = catalogue.NO_SUCH_NAME


def test_imagenet_file_names_equal_torchvisions():
    backbones = {"siamese-resnet50": "resnet50", "resnet50-compare-head": "resnet50", "siamese-vgg16": "vgg16",
                 "siamese-mobilenetv3": "mobilenet_v3_large"}  # fmt: skip
    for name, backbone in backbones.items():
        assert get_spec(name).backbone == backbone
        assert list(get_spec(name).imagenet_files) == imagenet_filenames(backbone)
    for name in list_detectors():
        spec = get_spec(name)
        if spec.backbone is None:
            assert spec.imagenet_files == ()
        else:
            assert list(spec.imagenet_files) == imagenet_filenames(spec.backbone)


def test_the_start_point_follows_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert catalogue.training_start_point("siamese-mobilenetv3").startswith("from scratch: no ImageNet weights")
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "mobilenet_v3_large-5c1a4163.pth").write_bytes(b"x")
    assert catalogue.training_start_point("siamese-mobilenetv3").startswith("ImageNet backbone weights")
    assert "no pretrained backbone" in catalogue.training_start_point("siamese-unet")


def test_the_torch_free_cache_folder_is_torchs(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet_cache_dir() == tmp_path / "hub" / "checkpoints"
    assert str(imagenet_cache_dir()) == str(torch.hub.get_dir()) + "/checkpoints"


def test_training_estimates_grow_with_work():
    small = catalogue.estimated_training_seconds("siamese-unet", pairs=10, epochs=1)
    assert catalogue.estimated_training_seconds("siamese-unet", pairs=20, epochs=2) == 4 * small
    assert catalogue.estimated_training_seconds("siamese-vgg16", pairs=10, epochs=1) > small
