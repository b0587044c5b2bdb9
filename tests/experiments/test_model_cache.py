"""The worker's detector cache: networks stay loaded across runs; classical detectors never push them out."""

from types import SimpleNamespace

import pytest

import inference
from experiments.runs import model_cache


@pytest.fixture
def built(monkeypatch):
    made = []

    def create_detector(name, weights=None, **_):
        made.append(name)
        return SimpleNamespace(info=SimpleNamespace(name=name, weights="none" if weights is None else "random"))

    monkeypatch.setattr(inference, "create_detector", create_detector)
    model_cache.clear()
    yield made
    model_cache.clear()


def _get(name, learned=True, seed=0):
    return model_cache.get_detector(name, "random" if learned else None, "random" if learned else "none", "cpu",
                                    64 if learned else None, seed)  # fmt: skip


def test_a_run_of_three_networks_and_two_classical_detectors_reloads_nothing_next_time(built):
    run = [("absdiff", False), ("ssim", False), ("siamese-unet", True), ("siamese-mobilenetv3", True),
           ("siamese-resnet50", True)]  # fmt: skip
    for _ in range(3):
        for name, learned in run:
            _get(name, learned)
    assert sorted(built) == sorted(name for name, _ in run)  # each built once


def test_networks_beyond_the_capacity_go_least_recently_used_first(built):
    for seed in range(model_cache.CAPACITY + 1):
        _get("siamese-unet", seed=seed)
    _get("siamese-unet", seed=0)  # the oldest was evicted: built again
    assert built.count("siamese-unet") == model_cache.CAPACITY + 2
    weighted = [d for d in model_cache._models.values() if d.info.weights != "none"]
    assert len(weighted) == model_cache.CAPACITY


def test_weightless_detectors_are_bounded_too(built):
    for seed in range(model_cache.WEIGHTLESS_CAPACITY + 5):
        _get("absdiff", learned=False, seed=seed)
    assert len(model_cache._models) == model_cache.WEIGHTLESS_CAPACITY


# In a fresh process: what the cyclic garbage collector still walks after the first network is loaded.
_FREEZE_PROBE = """
import gc
from experiments.runs import model_cache
model_cache.get_detector("absdiff", None, "none", "cpu", None)
assert gc.get_freeze_count() == 0  # a classical detector: nothing frozen yet
model_cache.get_detector("siamese-mobilenetv3", "random", "random", "cpu", 64)
frozen = gc.get_freeze_count()
model_cache.get_detector("siamese-unet", "random", "random", "cpu", 64)
gc.collect()
print(frozen, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_the_first_network_takes_the_process_objects_out_of_the_collectors_way_once():
    import subprocess
    import sys

    answer = subprocess.run([sys.executable, "-c", _FREEZE_PROBE], capture_output=True, text=True, check=True)
    frozen, frozen_later, walked = (int(value) for value in answer.stdout.split())
    assert frozen > 100_000  # torch, torchvision and the platform's imports
    assert abs(frozen_later - frozen) < 1_000  # not frozen again (objects freed or re-tracked move it a little)
    assert 500 < walked < frozen // 10  # a full collection walks the second network's objects, little else
