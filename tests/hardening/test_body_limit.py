"""The upload limit holds on the body as it streams in (issue 26, item 8): a chunked body with no
Content-Length, or one whose Content-Length claims more than any endpoint accepts, meets a 413
from a real daphne before the body is kept, and the server goes on serving."""

import asyncio
import concurrent.futures
import json
import select
import socket
import time

import pytest
import requests

from diffplatform.body_limit import BodyLimit, body_limit_bytes
from tests.live_services import start_daphne

LIMIT_MB = 1
ONNX_LIMIT_MB = 3


@pytest.fixture
def small_limit_daphne(service_env, tmp_path):
    env = {**service_env, "MAX_UPLOAD_MB": str(LIMIT_MB), "ONNX_MAX_MB": str(ONNX_LIMIT_MB)}
    server, base = start_daphne(env, tmp_path)
    yield server, base
    server.stop()


def answer_of(sock) -> tuple[int, dict]:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[: content_length(data)] or b"{}")


def content_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def head(base: str, extra: str, path: str = "/api/v1/datasets/") -> bytes:
    port = base.rsplit(":", 1)[1]
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"{extra}\r\n").encode()  # fmt: skip


def send_until_answered(sock, chunks: int, chunk: bytes) -> int:
    """Send up to `chunks` chunked-encoding chunks, stopping when the server answers or closes; bytes sent."""
    sent = 0
    for _ in range(chunks):
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    return sent


def test_a_chunked_body_is_refused_once_it_passes_the_limit(small_limit_daphne):
    server, base = small_limit_daphne
    chunk = b"\0" * 65536
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(head(base, "Transfer-Encoding: chunked\r\n"))
        sent = send_until_answered(sock, 64 * 16, chunk)  # up to 64 MB
        status, body = answer_of(sock)
    assert status == 413
    assert body["error"]["code"] == "too_large" and "at most 1 MB can be sent at once" in body["error"]["message"]
    assert sent < 16 * 2**20, f"the server read {sent / 2**20:.0f} MB before answering"
    assert requests.get(f"{base}/healthz/", timeout=5).status_code == 200
    assert server.process.poll() is None


def test_a_chunked_body_that_also_claims_a_length_is_refused_unread(small_limit_daphne):
    _, base = small_limit_daphne
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(head(base, "Transfer-Encoding: chunked\r\nContent-Length: 10\r\n"))
        sent = send_until_answered(sock, 64 * 16, b"\0" * 65536)
        status, _ = answer_of(sock)
    assert status == 400  # Twisted refuses the ambiguous framing (request smuggling) before any body
    assert sent < 16 * 2**20


def test_a_declared_length_over_the_limit_is_refused_before_the_body(small_limit_daphne):
    _, base = small_limit_daphne
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(head(base, f"Content-Length: {100 * 2**30}\r\nExpect: 100-continue\r\n"))
        started = time.monotonic()
        status, body = answer_of(sock)
    assert status == 413 and "102400.0 MB" in body["error"]["message"]
    assert time.monotonic() - started < 10  # answered without waiting for a body that never comes


def test_the_onnx_upload_has_its_own_larger_limit(small_limit_daphne):
    _, base = small_limit_daphne
    body = b"\0" * (2 * 2**20)  # over MAX_UPLOAD_MB, under ONNX_MAX_MB
    for path, status in (("/api/v1/models/", 401), ("/api/v1/datasets/", 413)):
        response = requests.post(f"{base}{path}", data=iter([body]), timeout=30)  # chunked: no Content-Length
        assert response.status_code == status, (path, response.text[:300])
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(head(base, "Transfer-Encoding: chunked\r\n", path="/api/v1/models/"))
        sent = send_until_answered(sock, 64 * 16, b"\0" * 65536)
        status, answer = answer_of(sock)
    assert status == 413 and "at most 3 MB can be sent at once" in answer["error"]["message"]
    assert sent < 16 * 2**20


def test_a_body_under_the_limit_still_reaches_the_application(small_limit_daphne):
    _, base = small_limit_daphne

    def body():
        yield b'{"name": '
        yield b'"' + b"x" * 200_000 + b'"}'

    response = requests.post(f"{base}/api/v1/datasets/", data=body(), headers={"Content-Type": "application/json"},
                             timeout=20)  # fmt: skip
    assert response.status_code == 401  # Django answered: no token


# --------------------------------------------------------------------------- other ASGI servers
def run_asgi(headers, chunks) -> tuple[list, list]:
    """Run `BodyLimit` over an application that reads its whole body; what was sent and what it saw."""
    sent, seen = [], []

    async def application(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return queue.pop(0)

    async def send(message):
        sent.append(message)

    call = BodyLimit(application)({"type": "http", "path": "/", "headers": headers}, receive, send)
    # a thread of its own: the suite's browser (Playwright's sync API) keeps an event loop in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, call).result()
    return sent, seen


def test_the_asgi_middleware_counts_streamed_bytes(settings):
    settings.MAX_UPLOAD_MB = LIMIT_MB
    sent, seen = run_asgi([], [b"\0" * 2**19] * 8)
    assert sent[0]["status"] == 413 and len(sent) == 2  # the application's own answer is dropped
    assert seen[-1] == "http.disconnect" and len(seen) <= 4
    sent, seen = run_asgi([(b"content-length", str(body_limit_bytes("/") + 1).encode())], [b""])
    assert sent[0]["status"] == 413 and seen == []
    sent, _ = run_asgi([], [b"\0" * 1000] * 3)
    assert sent[0]["status"] == 200
