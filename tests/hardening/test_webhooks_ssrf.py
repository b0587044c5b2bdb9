"""Issue 26, case 5: webhook URLs cannot reach the platform's own network.

Every address a host resolves to is checked, IPv4 written inside IPv6 included (mapped, compatible,
6to4, NAT64, Teredo) and IPv4 in any spelling; the name is resolved once per delivery
(`addresses.lookup`, patched here) and the connection goes to the checked address, Host and SNI
kept; proxies in the environment are ignored; one deadline bounds an attempt; the owner sees
delivered / refused / failed after N attempts, never the receiver's answer.
"""

import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from experiments.models import Experiment, WebhookDelivery
from experiments.notifications import addresses, webhooks
from experiments.notifications.addresses import is_public_address
from experiments.runs import services as run_services
from tests.api.conftest import token_client
from tests.api.test_datasets import error_of
from tests.factories import make_dataset
from tests.live_services import celery_workers, free_port, service_env, wait_until  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
from tls_cert import ensure_certificate

sys.path.pop(0)

ISSUE_URLS = ["http://[2002:7f00:1::]:9/", "http://[::127.0.0.1]:9/", "http://[64:ff9b::7f00:1]:9/"]
UNSEEN_URLS = [
    "http://[::ffff:127.0.0.1]:9/",  # IPv4-mapped
    "http://[::ffff:a00:1]/hook",  # mapped 10.0.0.1, in hex
    "http://[::10.1.2.3]/",  # IPv4-compatible, private
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254 (cloud metadata)
    "http://[2002:c0a8:101::]/",  # 6to4 of 192.168.1.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1 (stored inverted)
    "http://[2001:0:a00:1::1]/",  # Teredo, server 10.0.0.1
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/",  # hex and short form
    "http://017700000001/",  # octal
    "http://127.1:8000/",
    "http://0/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",  # shared address space (CGNAT)
    "http://224.0.0.1/",
    "http://localhost:8000/",
]
MALFORMED_URLS = ["http://[::1/", "http://[127.0.0.1]/", "ftp://example.com/", "http://user:pw@example.com/",
                  "http://example.com:99999/", "http://exa mple.com/", "http://example.com/\r\nX-Injected: 1"]  # fmt: skip
PUBLIC = ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
NOT_PUBLIC = ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.1.1", "100.64.0.1", "0.0.0.0",
              "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "2001:db8::1",
              "::ffff:127.0.0.1", "::127.0.0.1", "2002:7f00:1::", "2002:a00:1::1", "64:ff9b::7f00:1",
              "64:ff9b::a00:1", "64:ff9b:1::808:808", "2001:0:4136:e378:8000:63bf:80ff:fffe",
              "2001:0:a00:1::1", "fe80::1%eth0"]  # fmt: skip


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_public_whatever_their_wrapping(address):
    assert is_public_address(address)


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_internal_addresses_are_not_public_in_any_wrapping(address):
    assert not is_public_address(address)


@pytest.fixture
def api(user):
    return token_client(user)


@pytest.fixture
def labelled_dataset(user, make_pair_bytes):
    return make_dataset(user, name="webhooks", pairs=[("p0", *make_pair_bytes())])


def create(api, dataset, url):
    body = {"dataset": dataset.pk, "detectors": ["absdiff"], "webhook_url": url}
    return api.post("/api/v1/experiments/", body, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("url", ISSUE_URLS + UNSEEN_URLS)
def test_a_url_reaching_an_internal_address_is_refused_at_creation(api, labelled_dataset, url):
    response = create(api, labelled_dataset, url)
    assert response.status_code == 422, response.content
    message = error_of(response)["fields"]["webhook_url"][0]
    assert "not a public address" in message and "public addresses only" in message  # what to fix
    assert not Experiment.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_a_malformed_url_is_refused_with_what_to_fix(api, labelled_dataset, url):
    response = create(api, labelled_dataset, url)
    assert response.status_code in (400, 422), response.content
    assert error_of(response)["fields"]["webhook_url"] and not Experiment.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("answers", [["127.0.0.1"], ["93.184.216.34", "10.0.0.7"], ["2606:2800:220:1::", "::1"]])
def test_a_name_with_any_internal_address_is_refused(api, labelled_dataset, monkeypatch, answers):
    monkeypatch.setattr(addresses, "lookup", lambda host, port: answers)
    response = create(api, labelled_dataset, "https://127.0.0.1.nip.example/hook")
    assert response.status_code == 422 and not Experiment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_lookup_runs_outside_any_transaction(api, user, labelled_dataset, monkeypatch, settings, no_queue):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    inside = []
    monkeypatch.setattr(
        addresses, "lookup", lambda host, port: inside.append(connection.in_atomic_block) or ["10.9.9.9"]
    )
    assert create(api, labelled_dataset, "http://hooks.example.test/").status_code == 201
    run_services.experiment_start(
        owner=user, dataset=labelled_dataset, name="s", detectors=["absdiff"], webhook_url="http://hooks.example.test/"
    )
    assert inside == [False, False]


# --------------------------------------------------------------------------- deliveries
class Receiver:
    """A raw HTTP receiver on a loopback address: records requests, answers with `answer(conn)`."""

    def __init__(self, host="127.0.0.1", port=0, answer=None, tls=None):
        self.requests, self.answer, self.tls, self.sni = [], answer or self.ok, tls, []
        self.server = socket.create_server((host, port))
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def ok(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def serve(self):
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")), 0)
            )
            while len(body) < length:
                body += conn.recv(4096)
            self.requests.append({"head": head.decode(), "body": body})
            self.answer(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def receivers():
    made = []
    yield lambda **kw: made.append(Receiver(**kw)) or made[-1]
    for receiver in made:
        receiver.close()


def pending_delivery(user, url) -> WebhookDelivery:
    return WebhookDelivery.objects.create(owner=user, url=url, event="run.finished", payload={"run": 1})


def host_header(receiver) -> str:
    return next(ln for ln in receiver.requests[0]["head"].split("\r\n") if ln.lower().startswith("host:"))


@pytest.mark.django_db
def test_a_rebound_name_is_connected_to_at_the_checked_address_only(user, settings, monkeypatch, receivers):
    """DNS rebinding: the first answer is checked and used; a later, different answer is never asked for."""
    settings.WEBHOOK_ALLOW_PRIVATE = True  # two loopback addresses stand for "checked" and "rebound"
    checked = receivers(host="127.0.0.1")
    rebound = receivers(host="127.0.0.2", port=checked.port)
    answers = iter([["127.0.0.1"], ["127.0.0.2"], ["127.0.0.2"]])
    lookups = []
    monkeypatch.setattr(addresses, "lookup", lambda host, port: lookups.append(host) or next(answers))
    delivery = webhooks.deliver(pending_delivery(user, f"http://hooks.example.test:{checked.port}/in").pk)
    assert delivery.state == "delivered" and lookups == ["hooks.example.test"]
    assert len(checked.requests) == 1 and rebound.requests == []
    assert host_header(checked) == f"Host: hooks.example.test:{checked.port}"  # the name, not the address


@pytest.mark.django_db
def test_public_at_check_then_private_at_connect_sends_to_the_public_one(user, monkeypatch):
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    monkeypatch.setattr(addresses, "lookup", lambda host, port: next(answers))
    connected = []

    def refuse(address, *args, **kwargs):
        connected.append(address[0])
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr("experiments.notifications.sending.socket.create_connection", refuse)
    delivery = webhooks.deliver(pending_delivery(user, "http://rebinding.example.test/").pk)
    assert connected == ["93.184.216.34"] and delivery.state == "pending"


@pytest.mark.django_db
def test_tls_keeps_the_host_name_for_sni_and_the_certificate(user, settings, monkeypatch, receivers, tmp_path):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    ensure_certificate(tmp_path, "hooks.example.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    seen = []
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    receiver = receivers(tls=context)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "fullchain.pem"))
    monkeypatch.setattr(addresses, "lookup", lambda host, port: ["127.0.0.1"])
    delivery = webhooks.deliver(pending_delivery(user, f"https://hooks.example.test:{receiver.port}/").pk)
    assert delivery.state == "delivered" and seen == ["hooks.example.test"]
    # The same receiver under another name fails the certificate check: nothing is sent.
    other = webhooks.deliver(pending_delivery(user, f"https://other.example.test:{receiver.port}/").pk)
    assert other.state == "pending" and len(receiver.requests) == 1


@pytest.mark.django_db
def test_proxy_variables_are_ignored(user, settings, monkeypatch, receivers):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver, proxy = receivers(), receivers()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    delivery = webhooks.deliver(pending_delivery(user, f"http://127.0.0.1:{receiver.port}/").pk)
    assert delivery.state == "delivered" and len(receiver.requests) == 1 and proxy.requests == []


def trickle(conn):
    """A byte every 0.4 s of a well-formed answer that would take minutes to finish."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 1000:
        conn.sendall(bytes([byte]))
        time.sleep(0.4)


@pytest.mark.django_db
@pytest.mark.parametrize("answer", [trickle, lambda conn: time.sleep(30)], ids=["trickling", "silent"])
def test_a_slow_receiver_ends_within_the_one_deadline(user, settings, receivers, answer):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_S = 2.0
    receiver = receivers(answer=answer)
    started = time.monotonic()
    delivery = webhooks.deliver(pending_delivery(user, f"http://127.0.0.1:{receiver.port}/").pk)
    assert time.monotonic() - started < 4.0
    assert delivery.state == "pending" and delivery.attempts == 1 and receiver.requests


@pytest.mark.django_db
def test_the_owner_cannot_tell_a_closed_port_from_an_error_answer(api, user, settings, receivers):
    """No port-scanning oracle: a closed port, a 500, a redirect and a silent receiver read the same."""
    settings.WEBHOOK_ALLOW_PRIVATE, settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_TIMEOUT_S = True, 1, 1.0
    error = receivers(answer=lambda conn: conn.sendall(b"HTTP/1.1 500 Internal\r\nContent-Length: 0\r\n\r\n"))
    trap = receivers()
    redirect = receivers(
        answer=lambda conn: conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{trap.port}/\r\nContent-Length: 0\r\n\r\n".encode()
        )
    )
    silent = receivers(answer=lambda conn: time.sleep(5))
    ports = [free_port(), error.port, redirect.port, silent.port]
    for port in ports:
        webhooks.deliver(pending_delivery(user, f"http://127.0.0.1:{port}/").pk)
    listed = api.get("/api/v1/webhooks/deliveries/").json()["results"]
    shown = {(d["state"], d["attempts"], d["last_error"]) for d in listed}
    assert shown == {("failed", 1, "failed after 1 attempt")}, listed
    assert all("last_status" not in d for d in listed) and trap.requests == []


@pytest.mark.django_db
def test_a_delivery_to_a_name_now_internal_is_refused_in_plain_words(api, user, monkeypatch):
    monkeypatch.setattr(addresses, "lookup", lambda host, port: ["169.254.169.254"])
    delivery = webhooks.deliver(pending_delivery(user, "http://hooks.example.test/").pk)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("refused", 1, "refused: not a public address")


@pytest.fixture
def webhook_worker(service_env, celery_workers):  # noqa: F811
    service_env["DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE"] = "1"  # the receiver is on loopback
    return celery_workers.start()


@pytest.mark.integration
def test_a_real_worker_delivers_on_the_webhooks_queue(user, settings, webhook_worker, receivers):
    """The task is sent to the `webhooks` queue and a worker started as the tests' live workers are
    (the queues `make worker` and bin/run-all consume) delivers it."""
    from experiments import outbox

    receiver = receivers()
    delivery = pending_delivery(user, f"http://127.0.0.1:{receiver.port}/live")
    settings.WEBHOOK_ALLOW_PRIVATE = True  # this process only: the worker is told by its environment
    outbox.send_webhook(delivery.pk)
    wait_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).state != "pending", 60, "the delivery")
    assert WebhookDelivery.objects.get(pk=delivery.pk).state == "delivered" and len(receiver.requests) == 1
