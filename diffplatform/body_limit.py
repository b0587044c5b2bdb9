"""The upload limit enforced on the request body as it streams in, not on what Content-Length claims.

Django sees a request only once its whole body has been read: daphne (Twisted) spools every body
to a temporary file before it calls the application, and Django's ASGI handler copies it again.
A chunked body has no Content-Length at all. So each address's body limit (`ONNX_MAX_MB` for
the API's ONNX upload, `MAX_UPLOAD_MB` everywhere else, plus multipart framing) is enforced
twice, below Django:

- under daphne, `limit_daphne_bodies` counts the bytes Twisted hands over and answers 413 as soon
  as a declared length or the running total passes the limit; the rest of the body is read and
  thrown away (for at most `DISCARD_SECONDS`) so the client can read the answer, then the
  connection is closed;
- under any other ASGI server, `BodyLimit` does the same on the `http.request` messages.

Each endpoint's own, smaller limit is still checked by the views (`UploadLimitMiddleware`,
`ApiView`) once the body is in.
"""

import json

from django.conf import settings

from diffplatform.upload_limit import MULTIPART_OVERHEAD

DISCARD_SECONDS = 5.0


ONNX_UPLOAD_PATH = "/api/v1/models/"  # experiments.api.onnx_models.ModelListView: its own limit, ONNX_MAX_MB


def limit_mb(path: str) -> int:
    return settings.ONNX_MAX_MB if path == ONNX_UPLOAD_PATH else settings.MAX_UPLOAD_MB


def body_limit_bytes(path: str) -> int:
    """The largest request body accepted at `path` (the path without its query string)."""
    return limit_mb(path) * 1024 * 1024 + MULTIPART_OVERHEAD


def refusal(path: str, length: int | None) -> bytes:
    """The 413 answer (the API's error shape, readable as text too)."""
    sent = f"{length / 2**20:.1f} MB" if length is not None else f"over {body_limit_bytes(path) / 2**20:.1f} MB"
    message = (
        f"The request body is {sent}; at most {limit_mb(path)} MB can be sent at once here. "
        "Send fewer or smaller files."
    )
    return json.dumps({"error": {"status": 413, "code": "too_large", "message": message}}).encode()


# --------------------------------------------------------------------------- any ASGI server
class BodyLimit:
    """ASGI middleware: a body over the limit gets a 413 and the application a disconnect."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        limit = body_limit_bytes(path)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _answer(send, refusal(path, int(declared)))
        received = 0
        refused = False

        async def counted():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _answer(send, refusal(path, None))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        return await self.app(scope, counted, guarded_send)


async def _answer(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- daphne
def limit_daphne_bodies() -> None:
    """Patch daphne's request class (once) to count the body as Twisted receives it."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server: `BodyLimit` covers it
        return
    if getattr(WebRequest, "_body_limited", False):
        return
    got_length, handle_chunk, process = WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process

    def gotLength(self, length):
        self._body_received = 0
        self._body_refused = False
        # The request line is parsed (the channel holds its path); the request's own fields come later.
        self._body_path = getattr(self.channel, "_path", b"/").split(b"?", 1)[0].decode("latin-1")
        self._body_limit = body_limit_bytes(self._body_path)
        if length is not None and length > self._body_limit:
            got_length(self, 0)  # nothing is kept
            _refuse(self, refusal(self._body_path, length))
            return
        got_length(self, length)

    def handleContentChunk(self, data):
        if self._body_refused:
            return
        self._body_received += len(data)
        if self._body_received > self._body_limit:
            _refuse(self, refusal(self._body_path, None))
            return
        handle_chunk(self, data)

    def process_unless_refused(self):
        if getattr(self, "_body_refused", False):
            return None
        return process(self)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.process = process_unless_refused
    WebRequest._body_limited = True


def _refuse(request, body: bytes) -> None:
    """Answer 413 at once, keep reading (and dropping) what the client still sends for a moment so
    that it sees the answer rather than a reset connection, then close."""
    from twisted.internet import reactor

    request._body_refused = True
    request.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the answer
    transport = request.channel.transport
    transport.write(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    if hasattr(transport, "loseWriteConnection"):
        transport.loseWriteConnection()
        reactor.callLater(DISCARD_SECONDS, transport.abortConnection)
    else:
        transport.loseConnection()
