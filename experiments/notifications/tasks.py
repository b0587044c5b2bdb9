"""The webhook delivery task: an id in, one attempt (the service queues the next one after a back-off).

It runs on the `webhooks` queue, so deliveries never wait behind runs; each attempt ends within
`WEBHOOK_TIMEOUT_S` (see `experiments.notifications.sending`)."""

from celery import shared_task

from experiments import outbox
from experiments.notifications import webhooks
from experiments.task_leases import leased


def _poisoned(delivery_id: int, *, reason: str) -> None:
    webhooks.give_up(delivery_id, reason)


@shared_task(name=outbox.TASK_DELIVER_WEBHOOK, bind=True, acks_late=True, queue="webhooks")
@leased(_poisoned, lambda delivery_id: f"webhook delivery {delivery_id}")
def deliver_webhook(self, delivery_id: int) -> str:
    return webhooks.deliver(delivery_id).state
