"""The torch-free catalogue must agree with the registry and torchvision."""

from inference import catalogue
from inference.registry import detector_info, list_detectors
from inference.weights import imagenet_filenames


def test_catalogue_names_equal_the_registry():
    assert catalogue.catalogue_names() == list_detectors()


def test_learned_flags_and_families_equal_the_registry():
    for name in list_detectors():
        info = detector_info(name)
        assert catalogue.catalogue_entry(name).learned == info.learned
        assert catalogue.catalogue_entry(name).family == info.family


def test_imagenet_file_names_equal_torchvisions():
    backbones = {"siamese-resnet50": "resnet50", "resnet50-compare-head": "resnet50", "siamese-vgg16": "vgg16",
                 "siamese-mobilenetv3": "mobilenet_v3_large"}  # fmt: skip
    for name, backbone in backbones.items():
        assert list(catalogue.IMAGENET_FILES[name]) == imagenet_filenames(backbone)


def test_the_start_point_follows_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert catalogue.training_start_point("siamese-mobilenetv3").startswith("from scratch: no ImageNet weights")
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "mobilenet_v3_large-5c1a4163.pth").write_bytes(b"x")
    assert catalogue.training_start_point("siamese-mobilenetv3").startswith("ImageNet backbone weights")
    assert "no pretrained backbone" in catalogue.training_start_point("siamese-unet")


def test_training_estimates_grow_with_work():
    small = catalogue.estimated_training_seconds("siamese-unet", pairs=10, epochs=1)
    assert catalogue.estimated_training_seconds("siamese-unet", pairs=20, epochs=2) == 4 * small
    assert catalogue.estimated_training_seconds("siamese-vgg16", pairs=10, epochs=1) > small
