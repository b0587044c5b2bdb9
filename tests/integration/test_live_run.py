"""A real run end to end: Celery worker process, daphne process, Redis, database, WebSocket."""

import json
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from experiments import outbox
from experiments.models import Result, RunState
from experiments.runs import services as run_services
from tests.factories import make_dataset
from tests.live_services import session_cookie

pytestmark = pytest.mark.integration


def ws_url(base: str, run_id: int) -> str:
    return base.replace("http://", "ws://") + f"/ws/runs/{run_id}/"


def follow(socket, until_state=("succeeded", "failed", "cancelled"), timeout=120):
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = json.loads(socket.recv(timeout=deadline - time.monotonic()))
        events.append(event)
        if event.get("type") in ("state", "snapshot") and event.get("state") in until_state:
            return events
    raise TimeoutError(f"run did not finish; last events: {events[-3:]}")


@pytest.fixture
def queued_run(user, make_pair_bytes, monkeypatch):
    """A run created with its queueing held back, so a socket can join before work starts."""
    monkeypatch.setattr(outbox, "send_run", lambda run_id: None)
    pairs = [(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)]
    dataset = make_dataset(user, pairs=pairs)
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff", "ssim"])
    run = run_services.run_start(experiment=experiment)
    monkeypatch.undo()
    return run


def test_progress_of_a_real_run_arrives_over_the_websocket_in_order(user, queued_run, celery_worker, daphne_server):
    headers = {"Cookie": session_cookie(user), "Origin": daphne_server}
    with connect(ws_url(daphne_server, queued_run.pk), additional_headers=headers) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and snapshot["state"] == "queued"
        outbox.send_run(queued_run.pk)
        events = follow(socket)
    seqs = [e["seq"] for e in events[1:]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(s > snapshot["seq"] for s in seqs)
    progress = [e for e in events if e["type"] == "progress" and e.get("detector")]
    assert events[-1]["state"] == "succeeded", events[-1]
    assert {e["detector"] for e in progress} == {"absdiff", "ssim"}
    assert events[-1]["state"] == "succeeded", events[-1]
    queued_run.refresh_from_db()
    assert queued_run.state == RunState.SUCCEEDED
    assert queued_run.progress_done == queued_run.progress_total == 6
    results = Result.objects.filter(run=queued_run)
    assert results.count() == 6
    assert {(r.pair_id, r.detector) for r in results} == {
        (p.pk, d) for p in queued_run.experiment.dataset.pairs.all() for d in ("absdiff", "ssim")
    }
    assert all(r.iou is not None and r.heatmap_key and r.error_map_key for r in results)


def test_another_users_socket_is_refused(other_user, queued_run, daphne_server):
    headers = {"Cookie": session_cookie(other_user), "Origin": daphne_server}
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(daphne_server, queued_run.pk), additional_headers=headers)
    assert info.value.response.status_code == 403


def test_an_anonymous_socket_is_refused(queued_run, daphne_server):
    with pytest.raises(InvalidStatus):
        connect(ws_url(daphne_server, queued_run.pk), additional_headers={"Origin": daphne_server})
