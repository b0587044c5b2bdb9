"""One webhook POST to a checked address, within one deadline.

The connection goes to an address `addresses.resolve` checked (no second DNS lookup), while the
request keeps the URL's host name in `Host` and, over TLS, in SNI and the certificate check. No
proxy is used whatever the environment says (http.client knows none). The deadline covers connect,
send and reading the status line: a watchdog shuts the socket when it passes, so a receiver that
trickles a byte every few seconds cannot hold a worker; the body of the answer is never read.
"""

import contextlib
import http.client
import socket
import ssl
import threading
import time

from experiments.notifications.addresses import Target


class SendFailed(Exception):
    """The attempt did not get a 2xx answer; the message is for the operator's log only."""


def post(target: Target, body: bytes, headers: dict, *, deadline_s: float) -> int:
    """The receiver's HTTP status; `SendFailed` on any failure, including the deadline passing."""
    deadline = time.monotonic() + deadline_s
    connection = _connect(target, deadline)
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _abort, args=(connection,))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", target.path, body=body, headers={**headers, "Connection": "close"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        late = time.monotonic() >= deadline
        raise SendFailed("deadline passed" if late else f"{type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        connection.close()
    if time.monotonic() >= deadline:
        raise SendFailed("deadline passed")
    return status


def _connect(target: Target, deadline: float) -> http.client.HTTPConnection:
    """A connection to the first checked address that accepts one before the deadline."""
    failures = []
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection = _PinnedConnection(target, address, remaining)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            failures.append(f"{address}: {type(exc).__name__}: {exc}")
            continue
        return connection
    raise SendFailed("could not connect: " + ("; ".join(failures) or "deadline passed"))


class _PinnedConnection(http.client.HTTPSConnection):
    """http.client's connection to `address`, speaking for `target.host` (Host header and SNI)."""

    def __init__(self, target: Target, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address, self._tls = address, target.scheme == "https"
        self.default_port = 443 if self._tls else 80  # `Host` names the port only when it is not the default

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls:
            self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _abort(connection: http.client.HTTPConnection) -> None:
    """Unblock whatever the delivery is waiting for (the plain socket's shutdown, TLS or not)."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
