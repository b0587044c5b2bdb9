"""Work that survives a dead worker, and poison work that ends (issue 26), against real Celery
workers, Redis and the database.

Workers here beat every 0.5 s and a lease silent for 5 s is handed out again; the broker's
visibility timeout is 10 minutes, so only the heartbeat can bring a dead worker's task back in time.
"""

import io
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
from django.test import Client
from rest_framework.test import APIClient

from experiments import outbox, task_leases
from experiments.checkpoints import local_copies
from experiments.models import Result, Run, RunState, TaskLease, UploadedModel
from experiments.onnx_models import services as model_services
from experiments.runs import services as run_services
from tests.factories import make_dataset
from tests.live_services import WorkerPool, wait_until

pytestmark = pytest.mark.integration

PLUGINS = "tests.plugins.dead_worker_detectors"
HANDED_OUT_WITHIN_S = 120
PAIRS = 24  # slow-diff: 0.25 s a pair, stored 8 at a time


@pytest.fixture
def dead_worker_plugins(scratch_registry):
    from inference import registry

    registry.load_detector_modules([PLUGINS])


@pytest.fixture
def workers(service_env, dead_worker_plugins, tmp_path):
    from diffplatform.celery import app

    app.control.purge()
    env = {
        **service_env,
        "DIFFPLATFORM_DETECTOR_MODULES": PLUGINS,
        "CELERY_VISIBILITY_TIMEOUT": "600",
        "TASK_HEARTBEAT_S": "0.5",
        "TASK_HEARTBEAT_TIMEOUT_S": "5",  # ten beats: a busy live worker is never taken for dead
        "TASK_STALE_CHECK_INTERVAL_S": "1",
        "ONNX_PROBE_SECONDS": "120",  # a loaded machine must not turn the slow model into a refusal
    }
    pool = WorkerPool(env, tmp_path)
    yield pool
    pool.stop_all()


def test_a_run_whose_worker_is_killed_is_handed_out_again_and_finishes_once(user, make_pair_bytes, workers):
    dataset = make_dataset(user, pairs=[(f"p{i:02d}", *make_pair_bytes(seed=i)) for i in range(PAIRS)])
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="e", detectors=["absdiff", "slow-diff"]
    )
    first = workers.start()
    run = run_services.run_start(experiment=experiment)
    slow_results = Result.objects.filter(run=run, detector="slow-diff")
    wait_until(lambda: slow_results.count() >= 8, 120, "slow-diff never stored a batch", first)
    first.kill()
    killed_at = time.monotonic()
    assert slow_results.count() < PAIRS, "the kill must land mid-run"
    assert Run.objects.get(pk=run.pk).state == RunState.RUNNING

    workers.start()
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, HANDED_OUT_WITHIN_S, "the run never finished")
    assert time.monotonic() - killed_at < HANDED_OUT_WITHIN_S
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    rows = list(Result.objects.filter(run=run).values_list("pair_id", "detector"))
    assert len(rows) == len(set(rows)) == 2 * PAIRS  # every result exactly once
    slow = TaskLease.objects.get(task_name=outbox.TASK_RUN_DETECTOR, work__endswith="detector slow-diff")
    assert (slow.deliveries, slow.deaths, slow.running) == (2, 1, False)
    assert slow.finished_at is not None
    assert slow.task_id not in task_leases.unacknowledged_messages()  # no second copy at the visibility timeout


def test_a_detector_that_kills_its_worker_every_time_fails_after_three_deaths(user, make_pair_bytes, workers):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="e", detectors=["absdiff", "worker-killer"]
    )
    worker = workers.start(pool="prefork")  # the pool child dies each time; the worker requeues its task
    run = run_services.run_start(experiment=experiment)
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 180, "the poisoned run never finished", worker)
    run.refresh_from_db()
    reason = "the worker died 3 times while running this: it probably needs more memory than a worker has"
    assert run.state == RunState.PARTIAL, run.error
    assert reason in run.error
    assert run.progress["detectors"]["worker-killer"]["failed"].startswith(reason)
    killer = TaskLease.objects.get(task_name=outbox.TASK_RUN_DETECTOR, work__endswith="detector worker-killer")
    assert (killer.deliveries, killer.deaths) == (4, 3)  # three ran and died, the fourth ended it
    assert Result.objects.filter(run=run, detector="absdiff").count() == 2
    assert not Result.objects.filter(run=run, detector="worker-killer").exists()

    api = APIClient()
    api.force_authenticate(user)
    answer = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert answer["state"] == "partial" and reason in answer["error"]
    assert reason in answer["progress"]["detectors"]["worker-killer"]["failed"]
    page = Client()
    page.force_login(user)
    assert reason in page.get(f"/runs/{run.pk}/").content.decode()
    assert worker.process.poll() is None  # the worker itself lives on


def slow_onnx_model() -> bytes:
    """A small Siamese network at a fixed 384 px whose probe takes a few seconds on one CPU thread."""
    import torch

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.stem = torch.nn.Conv2d(3, 24, 3, padding=1)
            self.body = torch.nn.Sequential(*[torch.nn.Conv2d(24, 24, 3, padding=1) for _ in range(6)])
            self.head = torch.nn.Conv2d(24, 1, 1)

        def forward(self, a, b):
            return self.head(torch.abs(self.body(self.stem(a)) - self.body(self.stem(b))))

    buffer = io.BytesIO()
    example = (torch.zeros(1, 3, 384, 384), torch.zeros(1, 3, 384, 384))
    torch.onnx.export(Slow().eval(), example, buffer, input_names=["a", "b"], output_names=["out"],
                      opset_version=17, dynamo=False)  # fmt: skip
    return buffer.getvalue()


def test_a_validation_whose_worker_is_killed_is_handed_out_again_and_decided_once(user, workers):
    first = workers.start()
    model = model_services.model_upload(
        owner=user, data=slow_onnx_model(), name="slow", input_size="384", mean="0.5,0.5,0.5",
        std="0.25,0.25,0.25", inputs="two", output="logits",
    )  # fmt: skip
    leases = TaskLease.objects.filter(task_name=outbox.TASK_VALIDATE_MODEL, running=True)
    wait_until(leases.exists, 120, "the validation never started", first)
    first.kill()
    killed_at = time.monotonic()
    assert UploadedModel.objects.get(pk=model.pk).state == UploadedModel.State.VALIDATING, "kill mid-validation"

    workers.start()
    decided = UploadedModel.objects.filter(pk=model.pk).exclude(state=UploadedModel.State.VALIDATING)
    wait_until(decided.exists, HANDED_OUT_WITHIN_S, "the validation was never handed out again")
    assert time.monotonic() - killed_at < HANDED_OUT_WITHIN_S
    model.refresh_from_db()
    assert model.state == UploadedModel.State.READY, model.reason
    lease = TaskLease.objects.get(task_name=outbox.TASK_VALIDATE_MODEL)
    assert (lease.deliveries, lease.deaths, lease.running) == (2, 1, False)


# --------------------------------------------------------------------------- local copies of model files
def stored_model(size: int = 1 << 20, seed: int = 0):
    import hashlib

    from experiments import storage

    data = np.random.default_rng(seed).bytes(size)
    key = storage.save_bytes(f"checkpoints/test-{seed}/model.pt", data)
    return SimpleNamespace(file_key=key, sha256=hashlib.sha256(data).hexdigest(), size_bytes=size), data


def copy_in_a_process(checkpoints, barrier, answers) -> None:
    from experiments.checkpoints.local_copies import file_sha256, local_checkpoint_path

    for checkpoint in checkpoints:
        barrier.wait(30)  # every process asks for the same new model at the same moment
        try:
            answers.put(file_sha256(local_checkpoint_path(checkpoint)) == checkpoint.sha256)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            answers.put(repr(exc))


@pytest.mark.django_db
def test_processes_copying_the_same_model_at_once_all_get_a_whole_file(settings, tmp_path):
    import multiprocessing

    settings.VAR_DIR = tmp_path / "var"
    checkpoints = [stored_model(seed=seed)[0] for seed in range(8)]
    context = multiprocessing.get_context("fork")
    barrier, answers, count = context.Barrier(4), context.Queue(), 4
    processes = [context.Process(target=copy_in_a_process, args=(checkpoints, barrier, answers)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * count
    assert [answers.get(timeout=5) for _ in range(count * len(checkpoints))] == [True] * (count * len(checkpoints))
    assert not list((tmp_path / "var" / local_copies.FOLDER).glob("*.partial")), "no temporary file is left"


@pytest.mark.django_db
def test_a_truncated_or_corrupted_cached_copy_is_detected_and_replaced(settings, tmp_path):
    from experiments.checkpoints.local_copies import local_checkpoint_path

    settings.VAR_DIR = tmp_path / "var"
    checkpoint, data = stored_model(size=1 << 20)
    path = local_checkpoint_path(checkpoint)
    assert path.read_bytes() == data
    path.write_bytes(data[: len(data) // 2])  # a copy cut short by a killed process (old naming) or a full disk
    assert local_checkpoint_path(checkpoint).read_bytes() == data
    damaged = bytearray(data)
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))  # same size, other bytes: the hash catches it
    os.utime(path, ns=(1, 1))
    assert local_checkpoint_path(checkpoint).read_bytes() == data


@pytest.mark.django_db
def test_temporary_files_of_killed_copies_are_removed_and_a_good_copy_is_hashed_once(settings, tmp_path, monkeypatch):
    from experiments.checkpoints.local_copies import local_checkpoint_path

    settings.VAR_DIR = tmp_path / "var"
    folder = tmp_path / "var" / local_copies.FOLDER
    folder.mkdir(parents=True)
    abandoned, recent = folder / ".abc.123.partial", folder / ".def.456.partial"
    abandoned.write_bytes(b"half")
    recent.write_bytes(b"a copy in progress")
    os.utime(abandoned, (time.time() - 2 * local_copies.ABANDONED_AFTER_S,) * 2)
    checkpoint, _ = stored_model(size=1 << 16)
    local_checkpoint_path(checkpoint)
    assert not abandoned.exists() and recent.exists()
    hashed = []
    monkeypatch.setattr(local_copies, "file_sha256", lambda path: hashed.append(path) or checkpoint.sha256)
    for _ in range(3):
        local_checkpoint_path(checkpoint)
    assert hashed == []  # verified when copied, then trusted while its size and mtime stay the same
