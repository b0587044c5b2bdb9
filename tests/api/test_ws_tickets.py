"""WebSocket tickets: a token script opens a run's socket once, for that run only."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from experiments.live import tickets as ws_tickets
from experiments.runs import services as run_services
from tests.api.conftest import token_client
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued_run(user, make_pair_bytes, monkeypatch):
    from experiments import outbox

    monkeypatch.setattr(outbox, "send_run", lambda run_id: None)  # nothing to run: no worker here
    dataset = make_dataset(user, pairs=[("p0", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    return run_services.run_start(experiment=experiment)


def connect(path: str):
    """(accepted, first message or None) for a socket opened on the real ASGI application."""
    from diffplatform.asgi import application

    async def attempt():
        communicator = WebsocketCommunicator(application, path)
        connected, _ = await communicator.connect(timeout=5)
        message = await communicator.receive_json_from(timeout=5) if connected else None
        await communicator.disconnect()
        return connected, message

    return async_to_sync(attempt)()


def test_a_ticket_from_the_api_opens_the_runs_socket_once(user, queued_run):
    response = token_client(user).post(f"/api/v1/runs/{queued_run.pk}/ws-ticket/")
    assert response.status_code == 201
    body = response.json()
    assert body["expires_in"] == ws_tickets.TICKET_TTL_S
    assert body["url"].startswith("ws://") and body["url"].endswith(
        f"/ws/runs/{queued_run.pk}/?ticket={body['ticket']}"
    )
    path = body["url"].split("testserver", 1)[1]
    connected, snapshot = connect(path)
    assert connected and snapshot["type"] == "snapshot" and snapshot["run"] == queued_run.pk
    assert connect(path) == (False, None)


def test_a_ticket_is_bound_to_its_run(user, queued_run, make_pair_bytes):
    other = run_services.run_start(experiment=queued_run.experiment)
    ticket = ws_tickets.ticket_create(user=user, run_id=queued_run.pk)
    assert connect(f"/ws/runs/{other.pk}/?ticket={ticket}") == (False, None)
    assert connect(f"/ws/runs/{queued_run.pk}/?ticket={ticket}") == (False, None)  # spent by the failed try


def test_a_ticket_for_another_users_run_opens_nothing(other_user, queued_run):
    ticket = ws_tickets.ticket_create(user=other_user, run_id=queued_run.pk)
    assert connect(f"/ws/runs/{queued_run.pk}/?ticket={ticket}") == (False, None)


def test_an_unknown_or_expired_ticket_opens_nothing(user, queued_run):
    from django.core.cache import cache

    ticket = ws_tickets.ticket_create(user=user, run_id=queued_run.pk)
    cache.delete(f"ws-ticket:{ticket}")  # what the 60 s timeout does
    assert connect(f"/ws/runs/{queued_run.pk}/?ticket={ticket}") == (False, None)
    assert connect(f"/ws/runs/{queued_run.pk}/?ticket=made-up") == (False, None)


def test_tickets_expire_after_a_minute(user, queued_run):
    import redis
    from django.conf import settings

    ticket = ws_tickets.ticket_create(user=user, run_id=queued_run.pk)
    client = redis.Redis.from_url(settings.REDIS_URL)
    ttl = max(client.ttl(key) for key in client.scan_iter(match=f"*ws-ticket:{ticket}"))
    assert 0 < ttl <= 60


def test_a_socket_without_a_ticket_still_needs_a_session_and_origin(user, queued_run):
    assert connect(f"/ws/runs/{queued_run.pk}/") == (False, None)
