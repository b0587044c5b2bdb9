"""The webhook delivery task: an id in, one attempt (the service queues the next one after a back-off)."""

from celery import shared_task

from experiments import outbox
from experiments.notifications import webhooks


@shared_task(name=outbox.TASK_DELIVER_WEBHOOK, acks_late=True)
def deliver_webhook(delivery_id: int) -> str:
    return webhooks.deliver(delivery_id).state
