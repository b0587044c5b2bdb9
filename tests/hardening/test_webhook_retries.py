"""Issue 26: a webhook retry never waits in the broker, so a dead worker cannot hold it for the
visibility timeout (hours). The retry waits in its row (`next_attempt_at`, `enqueue_pending`) and
the outbox flush of any live worker queues it when it is due."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments import outbox
from experiments.models import WebhookDelivery
from experiments.notifications import webhooks
from tests.hardening.test_task_leases import queued_tasks
from tests.hardening.test_webhooks_ssrf import pending_delivery, receivers  # noqa: F401
from tests.live_services import WorkerPool, wait_until

HANDED_OUT_WITHIN_S = 120


@pytest.mark.django_db(transaction=True)
def test_a_failed_attempt_leaves_its_retry_in_the_row_and_the_flush_sends_it_only_when_due(user, settings, receivers):  # noqa: F811
    settings.WEBHOOK_ALLOW_PRIVATE, settings.WEBHOOK_BACKOFF_S, settings.WEBHOOK_TIMEOUT_S = True, 30, 2.0
    failing = receivers(answer=lambda conn: conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"))
    queued_tasks("webhooks")  # nothing left over from other tests
    delivery = webhooks.deliver(pending_delivery(user, f"http://127.0.0.1:{failing.port}/").pk)
    assert (delivery.state, delivery.attempts, delivery.enqueue_pending) == ("pending", 1, True)
    assert queued_tasks("webhooks") == []  # no message with a countdown for a worker to sit on
    assert outbox.flush_pending() == 0  # not due yet
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert outbox.flush_pending() == 1
    assert outbox.flush_pending() == 0  # claimed once
    assert queued_tasks("webhooks") == [(outbox.TASK_DELIVER_WEBHOOK, [delivery.pk])]


@pytest.mark.integration
def test_a_retry_due_after_its_worker_was_killed_is_delivered_by_another_worker(user, service_env, receivers, tmp_path):  # noqa: F811
    """Worker one makes the first attempt (the receiver answers 500) and is killed with SIGKILL while
    the retry waits; the broker's visibility timeout is an hour, so only the flush of worker two can
    send the retry in time."""
    from diffplatform.celery import app

    answers = iter([b"500 Oops"])
    receiver = receivers(
        answer=lambda conn: conn.sendall(b"HTTP/1.1 " + next(answers, b"200 OK") + b"\r\nContent-Length: 0\r\n\r\n")
    )
    app.control.purge()
    env = {**service_env, "CELERY_VISIBILITY_TIMEOUT": "3600", "DIFFPLATFORM_WEBHOOK_ALLOW_PRIVATE": "1",
           "WEBHOOK_BACKOFF_S": "4", "OUTBOX_INTERVAL_S": "1"}  # fmt: skip
    workers = WorkerPool(env, tmp_path)
    try:
        first = workers.start()
        delivery = pending_delivery(user, f"http://127.0.0.1:{receiver.port}/hook")
        outbox.send_webhook(delivery.pk)
        wait_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1, 60, "first attempt", first)
        first.kill()
        killed_at = time.monotonic()
        assert WebhookDelivery.objects.get(pk=delivery.pk).state == "pending"
        workers.start()
        wait_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).state != "pending", HANDED_OUT_WITHIN_S,
                   "the retry was never delivered")  # fmt: skip
        assert time.monotonic() - killed_at < HANDED_OUT_WITHIN_S
    finally:
        workers.stop_all()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("delivered", 2)
    assert len(receiver.requests) == 2  # the retry went exactly once
    assert not delivery.enqueue_pending and queued_tasks("webhooks") == []
