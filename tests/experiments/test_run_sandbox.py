"""Issue 26 in runs: a user's ONNX model runs only in its sandboxed child (a model that passed its check
at the probe's size and blows its memory at a run's larger B fails that detector with the reason, and
the worker goes on), and a user's uploaded checkpoint is never `torch.load`ed by the worker."""

import os

import numpy as np
import psutil
import pytest

from experiments.models import Result, UploadedModel
from experiments.onnx_models import services as model_services
from experiments.runs import engine, model_cache, tasks
from experiments.runs import services as run_services
from tests.conftest import png_bytes
from tests.factories import make_dataset
from tests.hardening.hostile_models import pixel_hungry_onnx

pytestmark = pytest.mark.django_db

CONTRACT = {"input_size": "any", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25", "inputs": "two", "output": "logits"}


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    monkeypatch.setattr("experiments.outbox.send_model_validation", lambda model_id: None)
    model_cache.clear()
    yield
    model_cache.clear()


def rgb(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def execute(run):
    """As the workers run it: prepare, each detector's task (its wrapper included), finish."""
    assert engine.prepare_run(run.pk)
    for name in run.experiment.detectors:
        tasks.run_detector.apply(args=[run.pk, name])
    tasks.finish_run.apply(args=[run.pk])
    run.refresh_from_db()
    return run


def runner_children() -> list:
    return [child for child in psutil.Process().children(recursive=True) if "inference.onnx_runner" in child.cmdline()]


def test_a_model_that_passed_its_check_and_blows_its_memory_at_a_runs_size_fails_only_that_detector(
    user, settings, django_capture_on_commit_callbacks
):
    settings.SANDBOX_MEMORY_MB, settings.ONNX_PROBE_ANY_SIZE = 300, 256  # 32 MB at the probe, 512 MB at 1024 px
    with django_capture_on_commit_callbacks(execute=True):
        model = model_services.model_upload(owner=user, data=pixel_hungry_onnx(128), name="hungry", **CONTRACT)
    model = model_services.model_validate(model_id=model.pk)
    assert model.state == UploadedModel.State.READY, model.reason
    pairs = [("small", png_bytes(rgb(64, 1)), png_bytes(rgb(64, 2)), None),
             ("large", png_bytes(rgb(1024, 3)), png_bytes(rgb(1024, 4)), None)]  # fmt: skip
    experiment = run_services.experiment_create(
        owner=user, dataset=make_dataset(user, pairs=pairs), name="e", detectors=["onnx:hungry", "absdiff"]
    )
    run = execute(run_services.run_start(experiment=experiment))

    assert run.state == "partial", run.error
    assert "onnx:hungry" in run.error and "the model needs more than 300 MB at 1024 x 1024 px" in run.error
    assert Result.objects.filter(run=run, detector="absdiff").count() == 2
    assert os.getpid() == psutil.Process().pid and runner_children() == []  # this process ran it and lives
