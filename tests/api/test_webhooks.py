"""Webhooks when a run finishes (issue 15): signed, retried with back-off, never to loopback or
private addresses unless a setting allows it."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from experiments.models import Experiment, WebhookDelivery
from experiments.notifications import webhooks
from tests.api.test_datasets import error_of
from tests.factories import run_in_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    """An HTTP server on loopback that records each POST and answers with `status` (200 by default)."""
    received, state = [], {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "body": body, "path": self.path})
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}/hook", "received": received, "state": state}
    server.shutdown()


def start_run(api, dataset, url, no_queue):
    body = {"dataset": dataset.pk, "detectors": ["absdiff", "ssim"], "threshold": 0.3, "webhook_url": url}
    response = api.post("/api/v1/experiments/", body, format="json")
    assert response.status_code == 201, response.content
    experiment = Experiment.objects.get(pk=response.json()["id"])
    assert response.json()["webhook_url"] == url
    run = api.post(f"/api/v1/experiments/{experiment.pk}/runs/")
    assert run.status_code in (200, 201, 202), run.content
    return run_in_process(experiment.runs.get())


def test_a_finished_run_posts_a_signed_event_to_loopback_when_allowed(
    api, user, labelled_dataset, receiver, settings, no_queue, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with django_capture_on_commit_callbacks(execute=False) as queued:
        run = start_run(api, labelled_dataset, receiver["url"], no_queue)
    delivery = WebhookDelivery.objects.get(run=run)
    assert delivery.state == "pending" and delivery.event == "run.finished" and queued  # sent on commit
    delivery = webhooks.deliver(delivery.pk)
    assert delivery.state == "delivered" and delivery.last_status == 200 and delivery.attempts == 1
    [request] = receiver["received"]
    secret = api.get("/api/v1/webhooks/secret/").json()["secret"]
    timestamp = request["headers"]["X-Diffplatform-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Diffplatform-Signature"] == f"sha256={expected}"
    payload = json.loads(request["body"])
    assert payload["run"] == run.pk and payload["state"] == "succeeded"
    assert {d["detector"] for d in payload["detectors"]} == {"absdiff", "ssim"}
    listed = api.get("/api/v1/webhooks/deliveries/").json()["results"]
    assert [d["state"] for d in listed] == ["delivered"]


@pytest.mark.parametrize("url", ["http://10.1.2.3/hook", "http://127.0.0.1:9/hook", "http://[::1]/hook"])
def test_a_private_or_loopback_url_is_refused_without_the_setting(api, labelled_dataset, url):
    body = {"dataset": labelled_dataset.pk, "detectors": ["absdiff"], "webhook_url": url}
    response = api.post("/api/v1/experiments/", body, format="json")
    assert response.status_code == 422  # well-formed, but not a URL the platform may call
    message = error_of(response)["fields"]["webhook_url"][0]
    assert "private" in message and "DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE" in message
    assert not Experiment.objects.exists()


def test_a_delivery_to_an_address_refused_by_then_is_refused_without_sending(
    api, labelled_dataset, receiver, settings, no_queue
):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    run = start_run(api, labelled_dataset, receiver["url"], no_queue)
    settings.WEBHOOK_ALLOW_PRIVATE = False
    delivery = webhooks.deliver(WebhookDelivery.objects.get(run=run).pk)
    assert delivery.state == "refused" and delivery.last_error == "refused: not a public address"
    assert receiver["received"] == []
    [listed] = api.get("/api/v1/webhooks/deliveries/").json()["results"]
    assert listed["state"] == "refused" and listed["last_error"] == "refused: not a public address"


def test_a_failing_receiver_is_retried_with_back_off_then_given_up(
    api, labelled_dataset, receiver, settings, no_queue, django_capture_on_commit_callbacks, monkeypatch
):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_BACKOFF_S = 3, 10
    sent = []
    monkeypatch.setattr("experiments.outbox.send_webhook", sent.append)
    run = start_run(api, labelled_dataset, receiver["url"], no_queue)
    receiver["state"]["status"] = 503
    delivery = WebhookDelivery.objects.get(run=run)
    queued_before = len(sent)
    for attempt, back_off in ((1, 10), (2, 20)):  # exponential back-off
        with django_capture_on_commit_callbacks(execute=True):
            before = timezone.now()
            delivery = webhooks.deliver(delivery.pk)
        assert delivery.state == "pending" and delivery.attempts == attempt and delivery.last_status == 503
        # the retry waits in its row for the outbox flush, not in the broker
        assert delivery.enqueue_pending and len(sent) == queued_before
        waits = (delivery.next_attempt_at - before).total_seconds()
        assert back_off - 1 < waits < back_off + 5
    delivery = webhooks.deliver(delivery.pk)
    assert delivery.state == "failed" and delivery.last_error == "failed after 3 attempts"
    assert len(receiver["received"]) == 3
    [listed] = api.get("/api/v1/webhooks/deliveries/").json()["results"]
    assert "last_status" not in listed and "503" not in str(listed)  # the receiver's answer is not shown


def test_secrets_and_deliveries_are_per_user(api, other_api, labelled_dataset, receiver, settings, no_queue):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    start_run(api, labelled_dataset, receiver["url"], no_queue)
    assert other_api.get("/api/v1/webhooks/deliveries/").json()["results"] == []
    mine, theirs = api.get("/api/v1/webhooks/secret/").json(), other_api.get("/api/v1/webhooks/secret/").json()
    assert mine["secret"] != theirs["secret"]
    rotated = api.post("/api/v1/webhooks/secret/").json()
    assert rotated["secret"] != mine["secret"] and api.get("/api/v1/webhooks/secret/").json() == rotated
