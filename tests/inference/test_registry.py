import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference import registry
from inference.detectors.base import ClassicalDetector
from inference.registry import (
    PLUGIN_MODULES_VARIABLE,
    UnknownDetectorError,
    create_detector,
    detector_info,
    get_spec,
    list_detectors,
    load_detector_modules,
    meta_param_count,
    register_detector,
)
from inference.runtime import seed_everything
from tests.inference.conftest import textured_image

REPO_ROOT = Path(__file__).resolve().parents[2]

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
    """The web tier may register a resolver, list names and read facts without loading torch."""
    code = (
        "import sys\n"
        "from inference import create_detector, list_detectors, WeightsUnavailable\n"
        "from inference.registry import get_spec\n"
        "from inference.weights import set_checkpoint_resolver\n"
        "names = list_detectors()\n"
        "specs = [get_spec(name) for name in names]\n"
        "assert 'siamese-resnet50' in names and specs[0].family\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# --- the registry's facts are the built detectors' facts -----------------------------------------

_built_default: dict[str, object] = {}


def build_default(name: str):
    """``name`` built with its default options and random weights, once per module."""
    if name not in _built_default:
        seed_everything(0)
        _built_default[name] = create_detector(name, weights=None, device="cpu")
    return _built_default[name]


@pytest.mark.parametrize("name", list_detectors())
def test_a_built_detector_reports_the_declared_facts(name, rng):
    spec = get_spec(name)
    detector = build_default(name)
    assert detector.info.name == name
    assert detector.info.family == spec.family
    assert detector.info.learned == spec.learned
    assert detector.info.input_size == spec.input_size
    assert detector.info.params == spec.params
    if spec.backbone is not None:
        assert detector.info.extra["backbone"] == spec.backbone
    a, b = textured_image(rng, 30, 44), textured_image(rng, 36, 40)
    prob = detector.predict(a, b)
    assert prob.shape == (36, 40)
    assert prob.dtype == np.float32
    assert 0.0 <= prob.min() <= prob.max() <= 1.0


@pytest.mark.parametrize("name", list_detectors())
def test_declared_params_equal_the_meta_device_count(name):
    spec = get_spec(name)
    assert spec.params == meta_param_count(name)
    assert detector_info(name).params == spec.params
    if not spec.learned:
        assert spec.params == 0
        assert spec.model_factory is None


@pytest.mark.parametrize("name", list_detectors())
def test_the_static_info_is_the_spec(name):
    spec, info = get_spec(name), detector_info(name)
    assert (info.family, info.learned, info.input_size) == (spec.family, spec.learned, spec.input_size)
    assert info.extra == {"backbone": spec.backbone, "description": spec.description}
    assert spec.description
    assert spec.relative_cost > 0
    assert (spec.input_size is not None) == spec.learned  # classical ones run at B's size


def test_built_in_specs_import_nothing_until_a_detector_is_created():
    assert all(isinstance(get_spec(name).builder, str) for name in list_detectors())


def test_the_decorator_records_every_fact_a_plugin_gives(scratch_registry):
    @register_detector(
        "test-facts", family="siamese", learned=True, input_size=96, relative_cost=12.5,
        description="A made-up learned detector.", params=7, backbone="resnet50",
        imagenet_files=["resnet50-11ad3fa6.pth"],
    )  # fmt: skip
    def build(*, name, weights, device):
        raise AssertionError("never built")

    spec = get_spec("test-facts")
    assert (spec.family, spec.learned, spec.input_size, spec.relative_cost) == ("siamese", True, 96, 12.5)
    assert (spec.params, spec.backbone, spec.imagenet_files) == (7, "resnet50", ("resnet50-11ad3fa6.pth",))
    assert spec.description == "A made-up learned detector."
    assert spec.builder is build
    assert detector_info("test-facts").params == 7


def test_a_plugin_without_description_takes_its_docstring_and_no_params(scratch_registry):
    @register_detector("test-doc", family="classical", learned=False)
    def build(*, name, weights, device):
        """First line.

        More.
        """

    assert get_spec("test-doc").description == "First line."
    assert get_spec("test-doc").params == 0
    assert get_spec("test-doc").input_size is None


def test_re_registering_the_same_builder_is_allowed(scratch_registry):
    def build(*, name, weights, device):
        raise AssertionError("never built")

    register_detector("test-again", family="classical", learned=False)(build)
    register_detector("test-again", family="classical", learned=False)(build)
    assert list_detectors("test-again") == ["test-again"]


def test_load_detector_modules_names_a_module_that_cannot_be_imported(scratch_registry):
    with pytest.raises(ImportError, match=r"tests\.plugins\.no_such_module"):
        load_detector_modules(["tests.plugins.no_such_module"])


def test_a_bad_module_in_the_environment_variable_is_reported_until_fixed(scratch_registry, monkeypatch):
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setenv(PLUGIN_MODULES_VARIABLE, "tests.plugins.gradient_detector, tests.plugins.no_such_module")
    for _ in range(2):  # not only the first time: the process must not run without the plug-in
        with pytest.raises(ImportError) as caught:
            list_detectors()
        assert "tests.plugins.no_such_module" in str(caught.value)
        assert PLUGIN_MODULES_VARIABLE in str(caught.value)
    monkeypatch.setenv(PLUGIN_MODULES_VARIABLE, "tests.plugins.gradient_detector")
    assert "gradient-diff" in list_detectors()


def test_a_builder_reference_that_does_not_resolve_is_an_import_error(scratch_registry):
    registry._add(
        registry.DetectorSpec(name="test-missing", family="classical", learned=False, builder="inference.cli:nope")
    )
    with pytest.raises(ImportError, match="nope"):
        create_detector("test-missing")


def test_a_spec_refuses_a_malformed_builder_reference():
    with pytest.raises(ValueError, match="module:attribute"):
        registry.DetectorSpec(name="x", family="classical", learned=False, builder="inference.cli.main")
