"""Issue 26, cases 1 to 3, over HTTP against the real stack (daphne, a real Celery worker, real Redis):
hostile checkpoints and ONNX models meet a clear 422 or a `rejected` state with the reason, the web
process's memory stays within 100 MB of its idle value, every worker survives, and nothing stays
behind (no row, no file, no queued task)."""

import threading
import time

import psutil
import pytest
import redis
import requests
from django.conf import settings
from rest_framework.authtoken.models import Token

from experiments import storage
from experiments.models import ModelCheckpoint, UploadedModel
from tests.hardening.hostile_models import (
    ONNX_FIELDS,
    deflate_bomb_checkpoint,
    exploding_onnx,
    torch_save_bytes,
)
from tests.hardening.test_bad_input import queued_tasks
from tests.live_services import start_daphne, wait_until

pytestmark = pytest.mark.integration

HEADROOM = 100 * 2**20


@pytest.fixture
def stack(user, celery_workers, service_env, tmp_path):
    worker = celery_workers.start()
    server, base = start_daphne(service_env, tmp_path)
    api = requests.Session()
    api.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    yield worker, server, base, api
    server.stop()


class PeakMemory:
    """The largest resident set of process `pid` seen while the block runs (sampled every 10 ms)."""

    def __init__(self, pid: int):
        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()

    def __enter__(self):
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def unacknowledged() -> int:
    return redis.Redis.from_url(settings.REDIS_URL).zcard(f"{settings.KEY_NAMESPACE}:celery:unacked_index")


def nothing_left() -> tuple:
    keys = [key for key in storage.list_all_keys() if key.startswith(("models/", "checkpoints/"))]
    return ModelCheckpoint.objects.count(), UploadedModel.objects.count(), keys, queued_tasks(), unacknowledged()


def post_checkpoint(api, base, data: bytes, name="w.pt"):
    files = {"file": (name, data, "application/octet-stream")}
    return api.post(f"{base}/api/v1/checkpoints/", files=files, data={"detector": "siamese-unet"}, timeout=120)


def test_a_deflate_bomb_and_a_checkpoint_that_fits_nothing_are_refused_without_a_memory_spike(stack):
    worker, server, base, api = stack
    post_checkpoint(api, base, b"\x00warm up the upload path")
    idle = psutil.Process(server.process.pid).memory_info().rss
    bomb = deflate_bomb_checkpoint(512)
    assert len(bomb) < 600_000
    with PeakMemory(server.process.pid) as memory:
        response = post_checkpoint(api, base, bomb)
    assert response.status_code == 422, response.text
    assert "is compressed" in response.json()["error"]["message"]
    assert memory.peak - idle < HEADROOM, f"the web process grew by {(memory.peak - idle) / 2**20:.0f} MB"

    import torch

    with PeakMemory(server.process.pid) as memory:
        response = post_checkpoint(api, base, torch_save_bytes({"w": torch.zeros(3, 3)}))
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("The state_dict does not fit siamese-unet: missing keys ")
    assert "unexpected keys w" in message
    assert memory.peak - idle < HEADROOM  # the checkpoint is loaded and compared in a sandbox child
    detectors = {d["name"]: d for d in api.get(f"{base}/api/v1/detectors/", timeout=30).json()}
    assert detectors["siamese-unet"]["weights"] == "untrained"  # never the owner's `auto` weights
    assert server.process.poll() is None and worker.process.poll() is None
    assert nothing_left() == (0, 0, [], 0, 0)
    assert server.process.poll() is None


def test_a_tiny_onnx_model_that_materialises_6_gb_is_rejected_and_the_worker_survives(stack):
    worker, server, base, api = stack
    api.get(f"{base}/api/v1/models/", timeout=30)  # warm
    idle = psutil.Process(server.process.pid).memory_info().rss
    files = {"file": ("model.onnx", exploding_onnx(6.4), "application/octet-stream")}
    with PeakMemory(server.process.pid) as memory:  # the upload's first parse runs in a sandbox child
        response = api.post(f"{base}/api/v1/models/", files=files, data={**ONNX_FIELDS, "name": "bomb"}, timeout=60)
    assert response.status_code == 201, response.text
    assert memory.peak - idle < HEADROOM, f"the web process grew by {(memory.peak - idle) / 2**20:.0f} MB"
    url = f"{base}/api/v1/models/{response.json()['id']}/"

    def decided():
        return api.get(url, timeout=30).json()["state"] != "validating"

    wait_until(decided, 180, "the validation", worker)
    body = api.get(url, timeout=30).json()
    assert body["state"] == "rejected"
    assert body["reason"].startswith(f"this model needs more than {settings.SANDBOX_MEMORY_MB} MB at 64 x 96 px")
    worker_process = psutil.Process(worker.process.pid)
    assert worker.process.poll() is None and worker_process.status() != psutil.STATUS_ZOMBIE
    assert [child for child in worker_process.children(recursive=True) if child.is_running()] == []
    time.sleep(0.5)  # the acknowledgement follows the task's end
    assert nothing_left()[1:] == (1, [], 0, 0)  # the row keeps the reason; its file is gone
    assert api.delete(url, timeout=30).status_code == 204
    assert nothing_left() == (0, 0, [], 0, 0)
    assert server.process.poll() is None
