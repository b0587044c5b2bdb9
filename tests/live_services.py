"""Real processes for integration tests: a Celery worker and a daphne server on loopback.

They share the test database (committed rows: tests use `transactional_db`), the test's Redis
and the test's media folder.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def service_env(transactional_db, media_storage, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_SETTINGS_MODULE="diffplatform.settings.test",
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        DIFFPLATFORM_KEY_NAMESPACE=settings.KEY_NAMESPACE,
        MEDIA_ROOT=str(media_storage),
        DIFFPLATFORM_VAR_DIR=str(tmp_path / "var"),
        CELERY_VISIBILITY_TIMEOUT="8",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    return env


class ManagedProcess:
    def __init__(self, args, env, log_path: Path):
        self.args, self.env, self.log_path = args, env, log_path
        self.process = None

    def start(self):
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self):
        """SIGKILL, as a crash would: no clean-up, no acknowledgement of the task in hand."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(predicate, timeout: float, what: str, process: ManagedProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.process.poll() is not None:
            raise RuntimeError(f"{what}: process exited\n{process.output()[-4000:]}")
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s" + (f"\n{process.output()[-4000:]}" if process else ""))


class WorkerPool:
    """Celery workers started (and killed) by a test."""

    def __init__(self, env, tmp_path):
        self.env, self.tmp_path, self.workers = env, tmp_path, []

    def start(self, pool: str = "solo") -> ManagedProcess:
        """A worker with one process; `solo` runs tasks in it, `prefork` in a child it replaces when it dies."""

        name = f"itest-{uuid.uuid4().hex[:8]}@localhost"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "diffplatform",
            "worker",
            "-Q",
            "cpu,gpu,webhooks",
            "-c",
            "1",
            "-P",
            pool,
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]
        worker = ManagedProcess(args, self.env, self.tmp_path / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        # The log line, not a broadcast ping: the worker may use another Redis than this process.
        try:
            wait_until(lambda: f"{name} ready." in worker.output(), 60, "celery worker", worker)
        except BaseException:
            worker.stop()
            raise
        return worker

    def stop_all(self):
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def celery_workers(service_env, tmp_path):
    from diffplatform.celery import app

    app.control.purge()  # only our queues, in our own Redis database
    pool = WorkerPool(service_env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def celery_worker(celery_workers):
    return celery_workers.start()


def start_daphne(env, tmp_path) -> tuple[ManagedProcess, str]:
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "diffplatform.asgi:application"]
    server = ManagedProcess(args, env, tmp_path / "daphne.log").start()
    base = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/healthz/", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # a loaded machine: not ready yet
            return False

    try:
        wait_until(healthy, 60, "daphne", server)
    except BaseException:
        server.stop()
        raise
    return server, base


@pytest.fixture
def daphne_server(service_env, tmp_path):
    server, base = start_daphne(service_env, tmp_path)
    yield base
    server.stop()


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
