"""Detector plug-ins: a module listed in DIFFPLATFORM_DETECTOR_MODULES is seen by every process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference import catalogue
from inference.registry import PLUGIN_MODULES_VARIABLE, create_detector, list_detectors, load_detector_modules
from tests.inference.conftest import textured_image

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.plugins.gradient_detector"
NAME = "gradient-diff"


def run_python(*args: str, tmp_path: Path, modules: str = PLUGIN) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "OMP_NUM_THREADS": "1",
        PLUGIN_MODULES_VARIABLE: modules,
    }
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def plugin(scratch_registry):
    load_detector_modules([PLUGIN])
    return NAME


def test_the_cli_lists_the_plugin(tmp_path):
    result = run_python("-m", "inference", "list", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows[NAME]["family"] == "classical"
    assert rows[NAME]["learned"] is False
    assert rows[NAME]["weights"] == "none"
    assert rows[NAME]["params"] == 0
    assert rows[NAME]["input_size"] is None
    assert "absdiff" in rows  # the built-ins are still there

    table = run_python("-m", "inference", "list", tmp_path=tmp_path)
    assert table.returncode == 0, table.stderr
    assert any(line.startswith(NAME) for line in table.stdout.splitlines())


def test_the_cli_runs_the_plugin_in_bs_frame(tmp_path, pair_files):
    paths, shape = pair_files
    out = tmp_path / "out"
    result = run_python(
        "-m", "inference", "diff", str(paths["a"]), str(paths["b"]), "--detector", NAME,
        "--label", str(paths["label"]), "--threshold", "0.2", "--out", str(out), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["detector"]["name"] == NAME
    assert summary["detector"]["family"] == "classical"
    assert summary["metrics"]["auroc"] > 0.8
    assert sorted(p.name for p in out.iterdir()) == ["error_map.png", "heatmap.png", "mask.png", "overlay.png"]
    with Image.open(out / "mask.png") as mask:
        assert (mask.height, mask.width) == shape


def test_a_plugin_that_cannot_be_imported_is_named_with_the_variable(tmp_path):
    result = run_python("-m", "inference", "list", tmp_path=tmp_path, modules=f"{PLUGIN},tests.plugins.no_such_module")
    assert result.returncode == 2
    assert "tests.plugins.no_such_module" in result.stderr
    assert PLUGIN_MODULES_VARIABLE in result.stderr


def test_a_fresh_process_lists_the_plugin_and_the_catalogue_without_torch(tmp_path):
    code = (
        "import json, sys\n"
        "from inference.catalogue import catalogue_entries, catalogue_entry, catalogue_names\n"
        "from inference.registry import get_spec, list_detectors\n"
        "entries = {name: entry.facts() for name, entry in catalogue_entries().items()}\n"
        "facts = [get_spec(name).params for name in list_detectors()]\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'names': catalogue_names(),\n"
        "                  'entry': catalogue_entry('gradient-diff').facts(), 'entries': entries}))\n"
    )
    result = run_python("-c", code, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["torch"] is False
    assert NAME in data["names"]
    assert "siamese-resnet50" in data["names"]
    assert data["entry"] == data["entries"][NAME]
    assert (data["entry"]["family"], data["entry"]["learned"]) == (
        "classical",
        False,
    )  # queue: tests/api/test_plugins.py


def test_the_catalogue_lists_a_loaded_plugin(plugin):
    entry = catalogue.catalogue_entries()[plugin]
    assert catalogue.catalogue_entry(plugin) == entry
    assert plugin in catalogue.catalogue_names()
    assert plugin in catalogue.BUILTIN_DETECTORS  # the compatibility mapping follows the registry
    assert (entry.family, entry.learned) == ("classical", False)  # its queue: tests/api/test_plugins.py
    assert (entry.input_size, entry.params, entry.relative_cost) == (None, 0, 3)
    assert "Sobel" in entry.description


def test_loading_is_scoped_to_the_test(plugin):
    assert plugin in list_detectors()


@pytest.mark.skipif(PLUGIN in os.environ.get(PLUGIN_MODULES_VARIABLE, ""), reason="loaded for the whole process")
def test_the_plugin_is_gone_after_its_test():
    assert NAME not in list_detectors()


def test_the_plugin_follows_the_detector_contract(plugin, rng):
    detector = create_detector(plugin)
    assert detector.info.weights == "none"
    a, b = textured_image(rng, 50, 70), textured_image(rng, 64, 48)
    prob = detector.predict(a, b)
    assert prob.shape == (64, 48)
    assert prob.dtype == np.float32
    assert 0.0 <= prob.min() <= prob.max() <= 1.0
    assert detector.predict(b, b).max() < 1e-3
    batched = detector.predict_batch([(a, b), (b, b)])
    np.testing.assert_allclose(batched[0], prob, atol=1e-6)


def test_the_plugin_is_higher_where_b_changed(plugin, pair):
    a, b, label = pair
    prob = create_detector(plugin).predict(a, b)
    assert prob[label].mean() > prob[~label].mean() + 0.2
