"""Training as a Celery task: progress (epoch, loss, val F1, ETA) arrives over the WebSocket."""

import json
import time

import pytest
from websockets.sync.client import connect

from experiments.datasets.benchmark import synthetic_dataset_create
from experiments.models import ModelCheckpoint, RunState, TrainingJob
from experiments.training import services as training_services
from tests.live_services import session_cookie

pytestmark = pytest.mark.integration


def test_training_progress_is_live_and_ends_with_a_checkpoint(user, celery_worker, daphne_server, monkeypatch):
    dataset = synthetic_dataset_create(owner=user, name="tiny", pairs=8, size=48, seed=2)
    monkeypatch.setattr(training_services, "_enqueue_training", lambda job_id: None)
    job = training_services.training_start(owner=user, detector="siamese-unet", dataset=dataset, epochs=2, size=48,
                                  batch_size=4)  # fmt: skip
    monkeypatch.undo()
    url = daphne_server.replace("http://", "ws://") + f"/ws/training/{job.pk}/"
    headers = {"Cookie": session_cookie(user), "Origin": daphne_server}
    events = []
    with connect(url, additional_headers=headers) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and snapshot["state"] == "queued"
        training_services._enqueue_training(job.pk)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            event = json.loads(socket.recv(timeout=deadline - time.monotonic()))
            events.append(event)
            if event["type"] == "state" and event["state"] in ("succeeded", "failed", "cancelled"):
                break
    assert events[-1]["state"] == "succeeded", events[-1]
    epochs = [e for e in events if e.get("stage") == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all("train_loss" in e and "val_f1" in e and "eta_s" in e for e in epochs)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    job.refresh_from_db()
    assert job.state == RunState.SUCCEEDED
    assert job.checkpoint == ModelCheckpoint.objects.get(detector="siamese-unet")
    assert TrainingJob.objects.count() == 1
