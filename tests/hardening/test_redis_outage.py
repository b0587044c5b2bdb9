"""Redis going away and coming back, with a real worker and server on a Redis of the test's own.

While Redis is down: pages and the API serve stored results and say that live updates and new
runs are waiting; a run started meanwhile is accepted and kept pending. When Redis returns, the
worker reconnects, the outbox queues the pending run, and it completes.
"""

import socket
import time

import pytest
import requests
from rest_framework.authtoken.models import Token

from diffplatform.embedded_redis import ensure_embedded_redis, stop_embedded_redis
from experiments.models import Run, RunState
from experiments.runs import services as run_services
from tests.factories import make_dataset
from tests.live_services import WorkerPool, session_cookie, start_daphne, wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    port = free_port()
    folder = tmp_path / "own-redis"
    ensure_embedded_redis(folder, port)
    yield folder, port
    stop_embedded_redis(port)


def run_state(run_id):
    return Run.objects.get(pk=run_id).state


def test_pages_and_api_survive_a_redis_outage_and_queued_runs_resume(user, make_pair_bytes, service_env,
                                                                     own_redis, tmp_path):  # fmt: skip
    folder, port = own_redis
    env = {**service_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "OUTBOX_INTERVAL_S": "1"}
    workers = WorkerPool(env, tmp_path)
    server = None
    try:
        workers.start()
        server, base = start_daphne(env, tmp_path)
        dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
        experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
        api = requests.Session()
        api.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        first = api.post(f"{base}/api/v1/experiments/{experiment.pk}/runs/", timeout=30).json()["id"]
        wait_until(lambda: run_state(first) == RunState.SUCCEEDED, 60, "the first run")

        stop_embedded_redis(port)
        cookie = {"Cookie": session_cookie(user)}

        def run_page():
            return requests.get(f"{base}/runs/{first}/", headers=cookie, timeout=30)

        # The server re-checks Redis every few seconds (service_status.CHECK_EVERY_S).
        wait_until(lambda: "Redis is unavailable" in run_page().text, 20, "the degraded banner")
        page = run_page()
        assert page.status_code == 200
        assert "absdiff" in page.text
        board = api.get(f"{base}/api/v1/runs/{first}/leaderboard/", timeout=30)
        assert board.status_code == 200
        assert board.json()["leaderboard"]["detectors"][0]["detector"] == "absdiff"
        assert "redis-unavailable" in board.headers["X-Service-Degraded"]

        started = time.monotonic()
        response = api.post(f"{base}/api/v1/experiments/{experiment.pk}/runs/", timeout=30)
        assert response.status_code == 202
        assert time.monotonic() - started < 15
        second = response.json()["id"]
        assert Run.objects.get(pk=second).enqueue_pending

        ensure_embedded_redis(folder, port)
        wait_until(lambda: run_state(second) == RunState.SUCCEEDED, 120, "the run queued during the outage")
        assert not Run.objects.get(pk=second).enqueue_pending
        assert Run.objects.get(pk=second).results.count() == 2
    finally:
        if server is not None:
            server.stop()
        workers.stop_all()
