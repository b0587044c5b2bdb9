"""`/ws/notifications/`: a signed-in user hears `finished` for their own runs and training jobs only."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from experiments.lifecycle import run_transition, training_transition
from experiments.models import TrainingJob
from experiments.runs import services as run_services
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def in_own_loop(scenario):
    """Run `scenario()` in a fresh event loop on its own thread: a session-wide Playwright browser
    (tests/browser) keeps an event loop running on the main thread, where async_to_sync refuses."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def headers_of(user):
    headers = [(b"origin", b"http://testserver")]
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        headers.append((b"cookie", cookie.encode()))
    return headers


async def open_socket(headers):
    from diffplatform.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


@pytest.fixture
def queued_run(user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[("p0", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="nightly", detectors=["absdiff"])
    return run_services.run_start(experiment=experiment)


def test_anonymous_sockets_are_refused():
    async def attempt():
        communicator, connected = await open_socket(headers_of(None))
        await communicator.disconnect()
        return connected

    assert in_own_loop(attempt) is False


def test_the_owner_hears_a_finished_run_and_another_user_hears_nothing(user, other_user, queued_run):
    mine_headers, their_headers = headers_of(user), headers_of(other_user)

    async def scenario():
        mine, connected_mine = await open_socket(mine_headers)
        theirs, connected_theirs = await open_socket(their_headers)
        assert connected_mine and connected_theirs
        assert await mine.receive_json_from(timeout=5) == {"type": "ready", "user": user.pk}
        assert await theirs.receive_json_from(timeout=5) == {"type": "ready", "user": other_user.pk}
        await sync_to_async(run_transition)(queued_run.pk, "running")
        assert await mine.receive_nothing(timeout=0.3)  # not finished yet: no notification
        await sync_to_async(run_transition)(queued_run.pk, "succeeded")
        event = await mine.receive_json_from(timeout=5)
        assert await theirs.receive_nothing(timeout=0.5)
        await mine.disconnect()
        await theirs.disconnect()
        return event

    event = in_own_loop(scenario)
    assert {k: event[k] for k in ("type", "kind", "id", "state", "url")} == {
        "type": "finished",
        "kind": "run",
        "id": queued_run.pk,
        "state": "succeeded",
        "url": f"/runs/{queued_run.pk}/",
    }
    assert "nightly" in event["title"] and "succeeded" in event["title"]


def test_a_finished_training_job_is_announced_to_its_owner(user, queued_run):
    job = TrainingJob.objects.create(
        owner=user, detector="siamese-unet", dataset=queued_run.experiment.dataset, config={}
    )

    headers = headers_of(user)

    async def scenario():
        socket, connected = await open_socket(headers)
        assert connected
        await socket.receive_json_from(timeout=5)
        await sync_to_async(training_transition)(job.pk, "cancelled")
        event = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return event

    event = in_own_loop(scenario)
    assert (event["type"], event["kind"], event["id"], event["state"]) == ("finished", "training", job.pk, "cancelled")
    assert event["url"] == f"/training/{job.pk}/"
