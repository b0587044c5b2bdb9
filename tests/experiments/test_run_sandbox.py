"""Issue 26 in runs: a user's ONNX model runs only in its sandboxed child (a model that passed its check
at the probe's size and blows its memory at a run's larger B fails that detector with the reason, and
the worker goes on), and a user's uploaded checkpoint is never `torch.load`ed by the worker."""

import hashlib
import io
import os

import numpy as np
import psutil
import pytest
import torch

from experiments import storage
from experiments.checkpoints import services as checkpoint_services
from experiments.models import ModelCheckpoint, Result, UploadedModel
from experiments.onnx_models import services as model_services
from experiments.runs import engine, model_cache, tasks
from experiments.runs import services as run_services
from inference.weights import load_checkpoint
from tests.conftest import png_bytes
from tests.factories import make_dataset
from tests.hardening.hostile_models import fitting_state_dict, pixel_hungry_onnx, torch_save_bytes

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


# --------------------------------------------------------------------------- uploaded checkpoints
UNET = "siamese-unet"


def uploaded_checkpoint(user):
    data = torch_save_bytes(fitting_state_dict(UNET), UNET)
    checkpoint, created = checkpoint_services.checkpoint_upload(owner=user, filename="w.pt", data=data)
    assert created
    return checkpoint, data


@pytest.fixture
def no_torch_load(monkeypatch):
    """torch.load raises in this process (the worker's): only a sandbox child may call it."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called in the worker")

    monkeypatch.setattr(torch, "load", refuse)


def pinned_run(user, checkpoint, dataset_pairs):
    experiment = run_services.experiment_create(
        owner=user, dataset=make_dataset(user, pairs=dataset_pairs), name="w", detectors=[UNET],
        detector_weights={UNET: checkpoint.provenance}, input_size=32,
    )  # fmt: skip
    return execute(run_services.run_start(experiment=experiment))


def small_pairs():
    return [(f"p{i}", png_bytes(rgb(32, i)), png_bytes(rgb(32, i + 10)), None) for i in range(2)]


def test_an_uploaded_checkpoint_is_stored_with_a_safetensors_copy_whose_tensors_equal_torch_loads(
    user, tmp_path, django_capture_on_commit_callbacks
):
    checkpoint, data = uploaded_checkpoint(user)
    assert checkpoint.origin == ModelCheckpoint.Origin.UPLOADED and checkpoint.tensors_key.endswith(".safetensors")
    copy = storage.read_bytes(checkpoint.tensors_key)
    assert hashlib.sha256(copy).hexdigest() == checkpoint.tensors_sha256
    (tmp_path / "copy.safetensors").write_bytes(copy)
    tensors, meta, _ = load_checkpoint(tmp_path / "copy.safetensors")
    expected = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert meta == expected["meta"] and tensors.keys() == expected["state_dict"].keys()
    for key, tensor in expected["state_dict"].items():
        assert tensors[key].dtype == tensor.dtype and torch.equal(tensors[key], tensor), key
    with django_capture_on_commit_callbacks(execute=True):
        checkpoint_services.checkpoint_delete(checkpoint=checkpoint)  # both files go with the row
    assert not storage.exists(checkpoint.file_key) and not storage.exists(checkpoint.tensors_key)


def test_a_run_with_an_uploaded_checkpoint_never_calls_torch_load_in_the_worker(user, no_torch_load):
    checkpoint, _ = uploaded_checkpoint(user)
    run = pinned_run(user, checkpoint, small_pairs())
    assert run.state == "succeeded", run.error
    assert {result.weights for result in Result.objects.filter(run=run)} == {checkpoint.provenance}
    assert run.environment["weights_sha256"][UNET] == checkpoint.sha256  # the uploaded file's identity


def test_an_upload_stored_before_it_had_a_copy_gets_one_from_the_sandbox_on_first_use(user, no_torch_load):
    data = torch_save_bytes(fitting_state_dict(UNET), UNET)
    checkpoint = checkpoint_services.checkpoint_register(
        owner=user, detector=UNET, dataset=None, data=data, sha256=hashlib.sha256(data).hexdigest(), epochs=0,
        val_metrics={}, config={"detector": UNET}, origin=ModelCheckpoint.Origin.UPLOADED,
    )  # fmt: skip
    assert checkpoint.tensors_key == ""
    run = pinned_run(user, checkpoint, small_pairs())
    assert run.state == "succeeded", run.error
    checkpoint.refresh_from_db()
    assert checkpoint.tensors_key and storage.exists(checkpoint.tensors_key)
    assert {result.weights for result in Result.objects.filter(run=run)} == {checkpoint.provenance}


def test_the_model_cache_keeps_one_child_per_model_and_ends_it_when_it_drops_the_model(
    user, django_capture_on_commit_callbacks, monkeypatch
):
    with django_capture_on_commit_callbacks(execute=True):
        model = model_services.model_upload(owner=user, data=pixel_hungry_onnx(1), name="small", **CONTRACT)
    assert model_services.model_validate(model_id=model.pk).state == UploadedModel.State.READY
    pairs = [(f"p{i}", png_bytes(rgb(32, i)), png_bytes(rgb(32, i + 5)), None) for i in range(3)]
    experiment = run_services.experiment_create(
        owner=user, dataset=make_dataset(user, pairs=pairs), name="e", detectors=["onnx:small"]
    )
    for _ in range(2):  # the second run reuses the loaded model: still one child
        assert execute(run_services.run_start(experiment=experiment)).state == "succeeded"
        assert len(runner_children()) == 1
    monkeypatch.setattr(model_cache, "CAPACITY", 0)
    model_cache._evict()  # dropped by the LRU: its child ends with it
    assert runner_children() == []


def test_the_migration_takes_every_checkpoint_it_cannot_vouch_for_as_uploaded(user):
    import importlib

    from django.apps import apps

    from experiments.models import TrainingJob

    migration = importlib.import_module("experiments.migrations.0012_runsandbox_checkpoint_tensors")
    rows = {
        name: ModelCheckpoint.objects.create(owner=owner, detector=UNET, file_key=name, sha256=name, is_public=public)
        for name, owner, public in (("public", None, True), ("trained", user, False), ("other", user, False))
    }  # fmt: skip
    dataset = make_dataset(user, pairs=[("p", png_bytes(rgb(8, 1)), png_bytes(rgb(8, 2)), None)])
    TrainingJob.objects.create(owner=user, detector=UNET, dataset=dataset, checkpoint=rows["trained"])
    # a user's meta can claim anything ("training_job" included): only the rows themselves count
    ModelCheckpoint.objects.filter(pk=rows["other"].pk).update(config={"training_job": 1})
    migration.origins(apps, None)
    origins = dict(ModelCheckpoint.objects.values_list("sha256", "origin"))
    assert origins == {"public": "shipped", "trained": "trained", "other": "uploaded"}
