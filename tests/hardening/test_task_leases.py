"""Leases of tasks (experiments/task_leases.py) in process, against the test's real Redis broker and
database: deaths are counted, poison ends, a stale task's unacknowledged message goes back to its
queue, a duplicate delivery is not counted twice; work left pending by a broker outage (model
validations, webhook deliveries) is queued again when the broker returns."""

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery.exceptions import Ignore, Retry
from django.db import OperationalError
from django.utils import timezone
from kombu import Queue
from rest_framework.test import APIClient

from experiments import outbox, task_leases
from experiments.models import TaskLease, UploadedModel, WebhookDelivery
from experiments.task_leases import DONE, POISONED, RUN

pytestmark = pytest.mark.django_db(transaction=True)


def delivery(task_id: str, name: str = "tests.leased"):
    """The request of one delivery of a task, as a worker hands it to the task's function."""
    return SimpleNamespace(name=name, request=SimpleNamespace(id=task_id, is_eager=False))


def test_each_delivery_that_finds_the_last_one_still_running_counts_a_death_and_the_third_ends_it(settings):
    settings.TASK_MAX_WORKER_DEATHS = 3
    task_id = uuid.uuid4().hex
    verdicts = [task_leases.begin(task_id, "tests.leased", "work")[0] for _ in range(4)]  # none of them ended
    assert verdicts == [RUN, RUN, RUN, POISONED]
    lease = TaskLease.objects.get(task_id=task_id)
    assert (lease.deliveries, lease.deaths, lease.running) == (4, 3, False)
    assert task_leases.begin(task_id, "tests.leased", "work")[0] == DONE  # a late copy does nothing


def test_a_poisoned_task_ends_its_work_with_the_reason_and_returns(settings):
    settings.TASK_MAX_WORKER_DEATHS = 2
    ended = []

    @task_leases.leased(lambda job, *, reason: ended.append((job, reason)))
    def work(task, job):
        raise AssertionError("a poisoned task must not run")

    task_id = uuid.uuid4().hex
    for _ in range(2):  # two deliveries whose worker died before they ended
        task_leases.begin(task_id, "tests.leased", "work")
    assert work(delivery(task_id), 7) is None
    assert ended == [(7, task_leases.poison_reason(2))]
    assert ended[0][1].startswith("the worker died 2 times while running this: it probably needs more memory")


def test_a_delivery_that_ends_counts_once_and_a_second_copy_is_ignored():
    calls = []

    @task_leases.leased(lambda job, *, reason: None)
    def work(task, job):
        calls.append(job)
        return "done"

    task_id = uuid.uuid4().hex
    assert work(delivery(task_id), 1) == "done"
    with pytest.raises(Ignore):  # a chord must not count the task twice
        work(delivery(task_id), 1)
    assert calls == [1]
    lease = TaskLease.objects.get(task_id=task_id)
    assert (lease.deliveries, lease.deaths, lease.running) == (1, 0, False) and lease.finished_at is not None


@pytest.mark.parametrize("error", [Retry(), OperationalError("database is locked")])
def test_a_delivery_that_raises_is_retried_under_the_same_id_and_its_retry_runs(error):
    attempts = []

    @task_leases.leased(lambda *, reason: None)
    def work(task):
        attempts.append(1)
        if len(attempts) == 1:
            raise error  # `autoretry_for` turns a transient error into a retry with this task id
        return "ok"

    task_id = uuid.uuid4().hex
    with pytest.raises(type(error)):
        work(delivery(task_id))
    assert not TaskLease.objects.get(task_id=task_id).running
    assert work(delivery(task_id)) == "ok"
    lease = TaskLease.objects.get(task_id=task_id)
    assert (lease.deliveries, lease.deaths) == (2, 0) and lease.finished_at is not None


def test_a_delivery_whose_task_was_ended_by_another_is_ignored():
    task_id = uuid.uuid4().hex

    @task_leases.leased(lambda *, reason: None)
    def work(task):
        # The stale check took the lease meanwhile, and the delivery it handed out ended the task.
        TaskLease.objects.filter(task_id=task_id).update(holder="another", finished_at=timezone.now())
        return "late"

    with pytest.raises(Ignore):
        work(delivery(task_id))


def test_a_stale_lease_puts_its_unacknowledged_message_back_at_the_head_of_its_queue(settings):
    from diffplatform.celery import app

    queue_name = f"lease-test-{uuid.uuid4().hex[:8]}"
    result = app.send_task("tests.nothing", args=[1], queue=queue_name)
    with app.connection_for_write() as connection:
        queue = Queue(queue_name, routing_key=queue_name)(connection.default_channel)
        taken = queue.get(no_ack=False)  # a worker took it and died before acknowledging it
        assert taken is not None and taken.headers["id"] == result.id
        assert queue.get(no_ack=False) is None
        assert task_leases.unacknowledged_messages()[result.id] == taken.delivery_tag

        task_leases.begin(result.id, "tests.nothing", "work")
        fresh_id = uuid.uuid4().hex
        task_leases.begin(fresh_id, "tests.nothing", "a live one")
        TaskLease.objects.filter(task_id=result.id).update(heartbeat_at=timezone.now() - timedelta(seconds=100))
        assert task_leases.hand_out_stale(stale_after_s=30) == [result.id]

        again = queue.get(no_ack=True)
        assert again is not None and again.headers["id"] == result.id
    assert result.id not in task_leases.unacknowledged_messages()  # not handed out a second time later
    lease = TaskLease.objects.get(task_id=result.id)
    assert (lease.running, lease.deaths) == (False, 1)
    assert TaskLease.objects.get(task_id=fresh_id).running  # its worker beats: left alone
    assert task_leases.hand_out_stale(stale_after_s=30) == []  # claimed once


def test_the_heartbeat_keeps_a_live_delivery_from_being_handed_out(settings):
    import time

    settings.TASK_HEARTBEAT_S = 0.05

    @task_leases.leased(lambda *, reason: None)
    def work(task):
        time.sleep(0.6)
        return task_leases.hand_out_stale(stale_after_s=0.4)

    assert work(delivery(uuid.uuid4().hex)) == []


# --------------------------------------------------------------------------- broker outage
@pytest.fixture
def broker_down(monkeypatch):
    """The Celery app of this process publishes to a port where nothing listens."""
    from diffplatform.celery import app
    from tests.live_services import free_port

    def reset_pools():
        app._pool = None
        app.amqp._producer_pool = None  # `app.amqp` is created on first use

    original = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    reset_pools()
    yield
    app.conf.broker_url = original
    reset_pools()


def uploaded_model(user) -> UploadedModel:
    return UploadedModel.objects.create(
        owner=user, name=f"m{uuid.uuid4().hex[:6]}", file_key="models/1/model.onnx", sha256="0" * 64, size_bytes=1,
        mean=[0, 0, 0], std=[1, 1, 1], inputs="two", output="logits",
    )  # fmt: skip


def webhook_delivery(user) -> WebhookDelivery:
    return WebhookDelivery.objects.create(owner=user, url="https://example.org/hook", event="run.finished", payload={})


def queued_tasks(queue_name: str) -> list[tuple[str, list]]:
    from diffplatform.celery import app

    found = []
    with app.connection_for_write() as connection:
        queue = Queue(queue_name, routing_key=queue_name)(connection.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            found.append((message.headers["task"], message.decode()[0]))
    return found


def test_validations_and_deliveries_queued_during_an_outage_stay_pending_and_go_when_it_ends(user, broker_down):
    model, hook = uploaded_model(user), webhook_delivery(user)
    outbox.send_model_validation(model.pk)
    outbox.send_webhook(hook.pk)
    assert UploadedModel.objects.get(pk=model.pk).enqueue_pending
    assert WebhookDelivery.objects.get(pk=hook.pk).enqueue_pending
    assert outbox.flush_pending() == 0  # still down: claimed, not sent, pending again
    assert UploadedModel.objects.get(pk=model.pk).enqueue_pending


def test_pending_validations_and_deliveries_are_queued_once_by_the_flush(user):
    queued_tasks("cpu"), queued_tasks("webhooks")  # nothing left over from other tests
    model, hook = uploaded_model(user), webhook_delivery(user)
    decided = uploaded_model(user)
    UploadedModel.objects.filter(pk__in=[model.pk, decided.pk]).update(enqueue_pending=True)
    UploadedModel.objects.filter(pk=decided.pk).update(state=UploadedModel.State.REJECTED)
    WebhookDelivery.objects.filter(pk=hook.pk).update(enqueue_pending=True)
    assert outbox.flush_pending() == 2
    assert outbox.flush_pending() == 0
    assert queued_tasks("cpu") == [(outbox.TASK_VALIDATE_MODEL, [model.pk])]
    assert queued_tasks("webhooks") == [(outbox.TASK_DELIVER_WEBHOOK, [hook.pk])]  # deliveries' own queue
    assert not UploadedModel.objects.filter(pk=model.pk, enqueue_pending=True).exists()
    assert not WebhookDelivery.objects.filter(enqueue_pending=True).exists()


# --------------------------------------------------------------------------- poison, per kind of work
def killed_deliveries(task, times: int) -> str:
    """The id of a task whose `times` deliveries died with their worker (none of them ended)."""
    task_id = uuid.uuid4().hex
    for _ in range(times):
        task_leases.begin(task_id, task.name, "work")
    return task_id


def run_delivery(task, task_id: str, *args):
    task.push_request(id=task_id, is_eager=False)
    try:
        return task.run(*args)
    finally:
        task.pop_request()


def test_a_validation_that_killed_three_workers_is_rejected_with_the_reason_on_the_page_and_api(user, client):
    from experiments.onnx_models.tasks import validate_model

    model = uploaded_model(user)
    run_delivery(validate_model, killed_deliveries(validate_model, 3), model.pk)
    model.refresh_from_db()
    assert model.state == UploadedModel.State.REJECTED
    assert model.reason == "validation failed: " + task_leases.poison_reason(3)
    api = APIClient()
    api.force_authenticate(user)
    assert api.get(f"/api/v1/models/{model.pk}/").json()["reason"] == model.reason
    client.force_login(user)
    assert "the worker died 3 times while running this" in client.get("/models/").content.decode()


def test_a_webhook_delivery_that_killed_three_workers_fails_with_the_reason(user):
    from experiments.notifications.tasks import deliver_webhook

    hook = webhook_delivery(user)
    run_delivery(deliver_webhook, killed_deliveries(deliver_webhook, 3), hook.pk)
    hook.refresh_from_db()
    assert (hook.state, hook.last_error) == (WebhookDelivery.State.FAILED, task_leases.poison_reason(3))
    api = APIClient()
    api.force_authenticate(user)
    assert api.get("/api/v1/webhooks/deliveries/").json()["results"][0]["last_error"] == hook.last_error
