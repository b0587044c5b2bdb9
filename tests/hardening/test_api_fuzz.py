"""The API against its own schema, fuzzed: schemathesis (every check; examples, coverage, fuzzing
and stateful phases; two workers) against the embedded default (SQLite, embedded Redis, a Celery worker, daphne), as
`make run` starts it, with a user, a labelled dataset and a finished run so ids hit real objects.

Passes only with no server error and no schema mismatch (issue 14). Nothing is excluded. Throttle
rates are raised for this server only: at the default rates the fuzzer's burst answers 429
(declared, but not what is tested). `schemathesis.toml` next to this file sets the one thing the
schema cannot say: a schema-valid request may be refused by a rule with 422 (never 400). A DELETE
the fuzzer sends to the fixture's ids may remove them (204, later 404s): both declared.

Development: `python -m tests.hardening.test_api_fuzz /tmp/fuzz` keeps such a server up (its URL
and token in /tmp/fuzz/server.txt) to run schemathesis against by hand.
"""

import io
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.live_services import ROOT, ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
# 15 examples per operation: about 90 s of fuzzing on a quiet 2-core machine (30 finds nothing more).
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_MAX_EXAMPLES", "15"))
FUZZ_TIMEOUT_S = 420

FIXTURE_SCRIPT = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_user("fuzzer", password="fuzz-password-1")
print("TOKEN=" + Token.objects.create(user=user).key)
"""


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _pair(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.integers(60, 120, size=(48, 48, 3), dtype=np.uint8)
    b = a.copy()
    b[10:24, 10:24] = (240, 30, 30)
    label = np.zeros((48, 48), np.uint8)
    label[10:24, 10:24] = 255
    return {"image_a": ("a.png", _png(a)), "image_b": ("b.png", _png(b)), "label": ("l.png", _png(label))}


def fuzz_env(tmp_path: Path) -> dict:
    """`make run`'s environment (no DATABASE_URL or REDIS_URL: SQLite and the embedded Redis)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE") and not k.startswith("PYTEST")
    }
    redis_port = free_port()
    env.update(
        DJANGO_SETTINGS_MODULE="diffplatform.settings.local",
        DIFFPLATFORM_VAR_DIR=str(tmp_path / "var"),
        EMBEDDED_REDIS_PORT=str(redis_port),
        DIFFPLATFORM_KEY_NAMESPACE=f"api-fuzz-{redis_port}",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        **{f"API_THROTTLE_{scope}": "100000/minute" for scope in ("ANON", "USER", "AUTH", "UPLOADS", "DIFF")},
    )
    return env


@contextmanager
def embedded_server(tmp_path: Path):
    """Migrates a scratch var dir, starts a worker and daphne; yields (base URL, API token)."""
    env = fuzz_env(tmp_path)
    manage = [sys.executable, "manage.py"]
    processes = []
    try:
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=180)
        out = subprocess.run([*manage, "shell", "-c", FIXTURE_SCRIPT], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        token = out.split("TOKEN=", 1)[1].split()[0]
        worker = ManagedProcess(
            [sys.executable, "-m", "celery", "-A", "diffplatform", "worker", "-Q", "cpu,gpu,webhooks", "-c", "1", "-P", "solo",
             "-n", "fuzz@localhost", "--without-gossip", "--without-mingle", "-l", "INFO"],
            env, tmp_path / "worker.log",
        ).start()  # fmt: skip
        processes.append(worker)
        port = free_port()
        server = ManagedProcess(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "diffplatform.asgi:application"],
            env, tmp_path / "daphne.log",
        ).start()  # fmt: skip
        processes.append(server)
        base = f"http://127.0.0.1:{port}"

        def healthy():
            try:
                return requests.get(f"{base}/healthz/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, 90, "daphne", server)
        wait_until(lambda: "fuzz@localhost ready." in worker.output(), 90, "celery worker", worker)
        yield base, token, processes
    finally:
        for process in reversed(processes):
            process.stop()
        from diffplatform.embedded_redis import stop_embedded_redis

        stop_embedded_redis(int(env["EMBEDDED_REDIS_PORT"]))


def create_objects(base: str, token: str, *, need_success: bool = True) -> int:
    """A labelled dataset of three pairs and an experiment with a finished run, through the API."""
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    dataset = api.post(f"{base}/api/v1/datasets/", json={"name": "labelled"}, timeout=30)
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    for i, category in enumerate(("roads", "roads", "fields")):
        pair = api.post(f"{base}/api/v1/datasets/{dataset_id}/pairs/", files=_pair(i),
                        data={"name": f"p{i}", "category": category}, timeout=30)  # fmt: skip
        assert pair.status_code == 201, pair.text
    experiment = api.post(f"{base}/api/v1/experiments/", timeout=30,
                          json={"dataset": dataset_id, "name": "e", "detectors": ["absdiff", "ssim"]})  # fmt: skip
    assert experiment.status_code == 201, experiment.text
    run = api.post(f"{base}/api/v1/experiments/{experiment.json()['id']}/runs/", timeout=30)
    assert run.status_code == 202, run.text
    url = run.headers["Location"]
    wait_until(lambda: api.get(url, timeout=10).json()["state"] in ("succeeded", "partial", "failed"), 120, "the run")
    state = api.get(url, timeout=10).json()["state"]
    assert state == "succeeded" or not need_success, state
    return run.json()["id"]


def fuzz_command(base: str, token: str, *extra: str) -> list[str]:
    return [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run", f"{base}/api/schema/?format=json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--workers", "2",
        "--max-examples", str(MAX_EXAMPLES), "--seed", "14",
        "--request-timeout", "60", "--suppress-health-check", "all",
        "-H", f"Authorization: Token {token}",
        *extra,
    ]  # fmt: skip


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis CLI not installed (requirements-dev.txt)")
def test_the_api_passes_a_schema_driven_fuzzer_on_the_embedded_default(tmp_path):
    with embedded_server(tmp_path) as (base, token, processes):
        create_objects(base, token)
        started = time.monotonic()
        fuzz = subprocess.run(fuzz_command(base, token), cwd=tmp_path, capture_output=True, text=True,
                              timeout=FUZZ_TIMEOUT_S)  # fmt: skip
        took = time.monotonic() - started
        server_log = processes[-1].output()
    report = fuzz.stdout + fuzz.stderr
    server_errors = [line for line in server_log.splitlines() if "Traceback" in line or "Error" in line]
    exit_code = fuzz.returncode
    assert exit_code == 0, (
        f"schemathesis exit {exit_code} after {took:.0f}s\n{report[-30000:]}\n--- daphne errors\n"
        + "\n".join(server_errors[-40:])
    )
    assert "database is locked" not in server_log


if __name__ == "__main__":  # development: `python -m tests.hardening.test_api_fuzz <scratch dir>`
    import signal

    import django

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the processes too
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diffplatform.settings.test")
    django.setup()
    scratch = Path(sys.argv[1])
    scratch.mkdir(parents=True, exist_ok=True)
    with embedded_server(scratch) as (base, token, _):
        create_objects(base, token, need_success=False)
        print(f"BASE={base} TOKEN={token}", flush=True)
        (scratch / "server.txt").write_text(f"{base} {token}\n")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
