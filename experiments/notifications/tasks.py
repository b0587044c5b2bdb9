"""The webhook delivery task: an id in, one attempt (the service queues the next one after a back-off).

It runs on the `webhooks` queue, so deliveries never wait behind runs; each attempt ends within
`WEBHOOK_TIMEOUT_S` (see `experiments.notifications.sending`)."""

from celery import shared_task

from experiments import outbox
from experiments.notifications import webhooks


@shared_task(name=outbox.TASK_DELIVER_WEBHOOK, acks_late=True, queue="webhooks")
def deliver_webhook(delivery_id: int) -> str:
    return webhooks.deliver(delivery_id).state
