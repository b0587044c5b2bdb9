"""Bounded load test on loopback: WebSocket followers of a live run while uploads and API reads go on.

Starts its own worker and daphne (temporary folder, its own SQLite file and embedded Redis unless
DATABASE_URL / REDIS_URL are set), then for --duration seconds (default 60):
- --clients WebSocket clients (default 50) follow the run's progress (each with its own ticket);
- one loop uploads pairs through the API, another reads run state, results and the leaderboard.
Prints p50/p95 latencies per kind and the error count; exits 1 on any error. Every request goes to
127.0.0.1 only, and every loop stops by itself.

Usage: .venv/bin/python bench/loadtest.py [--clients 50] [--duration 60]
"""

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png(seed: int, size: int = 128) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def start(args, env, log_path):
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_http(url: str, timeout: float = 60, process: subprocess.Popen | None = None, log: Path | None = None,
              any_status: bool = False) -> None:  # fmt: skip
    """Until `url` answers 2xx (any status with `any_status`: the server is up, whatever it says of its
    dependencies); RuntimeError after `timeout`, or at once (with `log`) when `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(log.read_text() if log else f"the server exited with {process.returncode}")
        try:
            answer = requests.get(url, timeout=1)
            if any_status or answer.ok:
                return
        except requests.RequestException:  # refused, or accepted but still loading the app (a read timeout)
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


class Recorder:
    def __init__(self):
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)

    def report(self) -> str:
        lines = [f"{'kind':<22}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}"]
        for kind, values in sorted(self.latencies.items()):
            p95 = float(np.percentile(values, 95))
            lines.append(f"{kind:<22}{len(values):>7}{statistics.median(values):>10.1f}{p95:>10.1f}")
        lines.append(f"errors: {len(self.errors)}" + (f" (first: {self.errors[0]})" if self.errors else ""))
        return "\n".join(lines)


async def timed_request(recorder, kind, method, url, **kwargs):
    started = time.perf_counter()
    try:
        response = await asyncio.to_thread(requests.request, method, url, timeout=30, **kwargs)
        if response.status_code >= 400:
            recorder.errors.append(f"{kind}: HTTP {response.status_code} {response.text[:200]}")
        return response
    except requests.RequestException as exc:
        recorder.errors.append(f"{kind}: {exc}")
        return None
    finally:
        recorder.add(kind, time.perf_counter() - started)


async def follower(recorder, base, headers, run_id, stop_at):
    from websockets.asyncio.client import connect

    ticket = await timed_request(recorder, "api ws-ticket", "POST", f"{base}/api/v1/runs/{run_id}/ws-ticket/",
                                 headers=headers)  # fmt: skip
    if ticket is None or ticket.status_code >= 400:
        return 0
    url = base.replace("http", "ws") + f"/ws/runs/{run_id}/?ticket={ticket.json()['ticket']}"
    received = 0
    started = time.perf_counter()
    try:
        async with connect(url, open_timeout=30) as socket_:
            await socket_.recv()
            recorder.add("ws connect+snapshot", time.perf_counter() - started)
            while time.monotonic() < stop_at:
                try:
                    message = json.loads(await asyncio.wait_for(socket_.recv(), timeout=stop_at - time.monotonic()))
                except TimeoutError:
                    break
                received += 1
                if message.get("sent_at"):
                    recorder.add("ws event delay", max(0.0, time.time() - message["sent_at"]))
    except Exception as exc:  # noqa: BLE001 - every failure is counted as an error
        recorder.errors.append(f"websocket: {type(exc).__name__}: {exc}")
    return received


async def uploader(recorder, base, headers, dataset_id, stop_at):
    index = 0
    while time.monotonic() < stop_at:
        files = {"image_a": ("a.png", png(10_000 + index)), "image_b": ("b.png", png(20_000 + index))}
        await timed_request(recorder, "api upload pair", "POST", f"{base}/api/v1/datasets/{dataset_id}/pairs/",
                            headers=headers, files=files, data={"name": f"load-{index}"})  # fmt: skip
        index += 1
        await asyncio.sleep(0.2)


async def reader(recorder, base, headers, run_id, stop_at):
    paths = [f"/api/v1/runs/{run_id}/", f"/api/v1/runs/{run_id}/results/", "/api/v1/datasets/", "/api/v1/detectors/"]
    index = 0
    while time.monotonic() < stop_at:
        path = paths[index % len(paths)]
        await timed_request(recorder, f"api read {path.split('/')[3]}", "GET", f"{base}{path}", headers=headers)
        index += 1
        await asyncio.sleep(0.05)


async def drive(base, headers, run_id, dataset_id, clients, duration):
    recorder = Recorder()
    stop_at = time.monotonic() + duration
    followers = [follower(recorder, base, headers, run_id, stop_at) for _ in range(clients)]
    results = await asyncio.gather(*followers, uploader(recorder, base, headers, dataset_id, stop_at),
                                   reader(recorder, base, headers, run_id, stop_at))  # fmt: skip
    return recorder, sum(results[:clients])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--pairs", type=int, default=400, help="pairs in the followed run (keeps it busy)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "diffplatform.settings.local", "DEBUG": "false",
               "DIFFPLATFORM_VAR_DIR": folder, "EMBEDDED_REDIS_PORT": str(free_port()), "LOG_LEVEL": "WARNING",
               "DIFFPLATFORM_KEY_NAMESPACE": f"loadtest-{os.getpid()}", "API_THROTTLE_USER": "100000/minute",
               "API_THROTTLE_UPLOADS": "100000/minute"}  # fmt: skip
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        from experiments.datasets.benchmark import synthetic_dataset_create
        from experiments.datasets.services import dataset_create
        from experiments.runs.services import experiment_create

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("load", password="load-load-load")
        token = Token.objects.create(user=user).key
        dataset = synthetic_dataset_create(owner=user, name="load-run", pairs=args.pairs, size=128, seed=0)
        experiment = experiment_create(owner=user, dataset=dataset, name="load", detectors=["ssim", "absdiff"])
        uploads = dataset_create(owner=user, name="load-uploads")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        worker = start([sys.executable, "-m", "celery", "-A", "diffplatform", "worker", "-Q", "cpu,gpu,webhooks", "-c", "1",
                        "-P", "solo", "-l", "WARNING"], env, Path(folder) / "worker.log")  # fmt: skip
        server = start([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                        "diffplatform.asgi:application"], env, Path(folder) / "daphne.log")  # fmt: skip
        try:
            wait_http(f"{base}/healthz/")
            headers = {"Authorization": f"Token {token}"}
            run = requests.post(f"{base}/api/v1/experiments/{experiment.pk}/runs/", headers=headers, timeout=30).json()
            deadline = time.monotonic() + 120  # the clock starts once the worker is on the run
            while (
                requests.get(f"{base}/api/v1/runs/{run['id']}/", headers=headers, timeout=30).json()["state"]
                == "queued"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker never started the run")
                time.sleep(0.5)
            recorder, events = asyncio.run(drive(base, headers, run["id"], uploads.pk, args.clients, args.duration))
        finally:
            for process in (server, worker):
                process.terminate()
                process.wait(30)
            from diffplatform.embedded_redis import stop_embedded_redis

            stop_embedded_redis(int(env["EMBEDDED_REDIS_PORT"]))
    print(f"Load test: {args.clients} WebSocket clients following a run for {args.duration:.0f} s, "
          f"with uploads and API reads alongside (loopback, {os.cpu_count()} cores)")  # fmt: skip
    print(f"progress events received by all clients: {events}")
    print(recorder.report())
    sys.exit(1 if recorder.errors else 0)


if __name__ == "__main__":
    main()
