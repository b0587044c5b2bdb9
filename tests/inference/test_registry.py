import json

import pytest

from inference import registry
from inference.detectors.base import ClassicalDetector
from inference.registry import (
    UnknownDetectorError,
    create_detector,
    detector_info,
    list_detectors,
    register_detector,
)

REQUIRED = {
    "absdiff",
    "ssim",
    "siamese-unet",
    "siamese-resnet50",
    "siamese-vgg16",
    "siamese-mobilenetv3",
    "resnet50-compare-head",
    "ensemble",
}


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so test plug-ins do not leak into other tests."""
    list_detectors()  # make sure the built-ins are in the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_it_lists_every_required_detector_sorted():
    names = list_detectors()
    assert set(names) >= REQUIRED
    assert names == sorted(names)


def test_it_filters_names_with_a_wildcard_pattern():
    assert list_detectors("siamese-*") == [
        "siamese-mobilenetv3",
        "siamese-resnet50",
        "siamese-unet",
        "siamese-vgg16",
    ]


def test_it_rejects_an_unknown_name_listing_the_known_ones():
    with pytest.raises(KeyError) as caught:
        create_detector("no-such-detector")
    message = str(caught.value)
    assert "no-such-detector" in message
    assert "absdiff" in message
    assert "siamese-unet" in message
    assert isinstance(caught.value, UnknownDetectorError)


def test_a_plugin_registered_with_the_decorator_can_be_created(scratch_registry, pair):
    @register_detector("test-constant", family="classical", learned=False)
    def build(*, name, weights, device):
        return ClassicalDetector(name, lambda a, b: a[..., 0] * 0.0 + 0.25)

    a, b, _ = pair
    detector = create_detector("test-constant")
    assert "test-constant" in list_detectors()
    assert detector.info.name == "test-constant"
    assert detector.predict(a, b).mean() == pytest.approx(0.25)


def test_a_detector_class_registers_with_its_own_family(scratch_registry):
    @register_detector("test-class")
    class Constant(ClassicalDetector):
        def __init__(self, *, name, weights, device):
            super().__init__(name, lambda a, b: a[..., 0] * 0.0)

    assert detector_info("test-class").family == "classical"
    assert detector_info("test-class").learned is False


def test_it_refuses_to_register_a_name_twice(scratch_registry):
    with pytest.raises(ValueError, match="already registered"):

        @register_detector("absdiff", family="classical", learned=False)
        def another(*, name, weights, device):
            raise AssertionError("never built")


def test_it_rejects_an_unknown_family(scratch_registry):
    with pytest.raises(ValueError, match="family"):
        register_detector("test-bad", family="transformer", learned=True)(lambda **_: None)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_static_info_is_json_safe_and_places_nothing_on_a_device(name):
    info = detector_info(name)
    data = json.loads(json.dumps(info.as_dict()))
    assert data["name"] == name
    assert data["device"] == "none"
    if info.learned:
        assert info.params > 0
        assert info.input_size == 256
        assert info.weights == "unavailable"  # the test cache is empty
        assert len(data["mean"]) == 3
        assert len(data["std"]) == 3
    else:
        assert info.weights == "none"


def test_static_params_match_the_built_network():
    built = create_detector("siamese-unet", weights=None, device="cpu")
    assert detector_info("siamese-unet").params == built.info.params
    assert 1_200_000 < built.info.params < 1_500_000  # FC-Siam-diff is ~1.35M


def test_the_registry_and_weights_api_import_without_torch():
    """The web tier may register a resolver and list names without loading torch."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from inference import create_detector, list_detectors, WeightsUnavailable\n"
        "from inference.weights import set_checkpoint_resolver\n"
        "print('torch' in sys.modules)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
