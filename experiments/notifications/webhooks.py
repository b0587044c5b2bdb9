"""Signed webhook deliveries: one when a run of an experiment with a webhook URL finishes.

Each delivery is a POST of JSON with headers
``X-Diffplatform-Event``, ``X-Diffplatform-Delivery`` (its id), ``X-Diffplatform-Timestamp`` and
``X-Diffplatform-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"`` under the
owner's webhook secret. A delivery that fails (network error, a non-2xx answer or
``WEBHOOK_TIMEOUT_S`` passing, one deadline for the whole attempt) is retried with exponential
back-off up to ``WEBHOOK_MAX_ATTEMPTS``, then ``failed``; one to an address that is not public is
``refused`` at once. Deliveries run on the ``webhooks`` queue.

A retry waits in its row (`next_attempt_at`, `enqueue_pending`), never in the broker: the outbox
flush in every worker queues it when it is due. A message sent with a countdown sits reserved by
one worker until then, and comes back only after the visibility timeout (hours) if that worker dies.
"""

import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from experiments.models import Run, WebhookDelivery, WebhookSecret
from experiments.notifications import sending
from experiments.notifications.addresses import NOT_PUBLIC, AddressRefused, Unresolvable, resolve

logger = logging.getLogger(__name__)
RUN_FINISHED = "run.finished"


def secret_for(user) -> WebhookSecret:
    secret, _ = WebhookSecret.objects.get_or_create(owner=user, defaults={"secret": secrets.token_hex(32)})
    return secret


def rotate_secret(user) -> WebhookSecret:
    """A new secret; deliveries from now on are signed with it."""
    secret = secret_for(user)
    secret.secret = secrets.token_hex(32)
    secret.save(update_fields=["secret"])
    return secret


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def run_payload(run: Run) -> dict:
    experiment = run.experiment
    rows = (run.leaderboard or {}).get("detectors", [])
    return {
        "event": RUN_FINISHED,
        "run": run.pk,
        "state": run.state,
        "experiment": experiment.pk,
        "experiment_name": experiment.name,
        "dataset": experiment.dataset_id,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": run.error,
        "detectors": [
            {
                "detector": row.get("detector"),
                "pooled_f1": (row.get("pooled") or {}).get("f1"),
                "pooled_iou": (row.get("pooled") or {}).get("iou"),
                "failed": row.get("failed"),
            }
            for row in rows
        ],
        "leaderboard_api": f"/api/v1/runs/{run.pk}/leaderboard/",
    }


def queue_run_finished(run: Run) -> WebhookDelivery | None:
    """Record the delivery for a finished run and queue it once this transaction commits."""
    url = run.experiment.webhook_url
    if not url:
        return None
    from experiments import outbox

    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            owner=run.experiment.owner, run=run, url=url, event=RUN_FINISHED, payload=run_payload(run)
        )
        transaction.on_commit(lambda: outbox.send_webhook(delivery.pk))
    return delivery


def deliver(delivery_id: int) -> WebhookDelivery:
    """One attempt; on failure the next one is due after a back-off, until the attempts run out.

    What the owner sees is the state and the number of attempts, never the receiver's answer or a
    network error (that would let anyone map the ports behind an address): details go to the log."""
    delivery = WebhookDelivery.objects.select_related("owner").get(pk=delivery_id)
    if delivery.state != WebhookDelivery.State.PENDING:
        return delivery
    delivery.attempts += 1
    try:
        target = resolve(delivery.url)  # the one lookup; the connection goes to these checked addresses
    except Unresolvable as exc:
        return _failed_attempt(delivery, status=None, reason=str(exc))
    except AddressRefused as exc:
        logger.warning("webhook delivery %s refused: %s", delivery.pk, exc)
        return _finish(delivery, WebhookDelivery.State.REFUSED, error=NOT_PUBLIC)
    body = json.dumps(delivery.payload, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "diffplatform-webhook/1",
        "X-Diffplatform-Event": delivery.event,
        "X-Diffplatform-Delivery": str(delivery.pk),
        "X-Diffplatform-Timestamp": timestamp,
        "X-Diffplatform-Signature": signature(secret_for(delivery.owner).secret, timestamp, body),
    }
    try:
        status = sending.post(target, body, headers, deadline_s=settings.WEBHOOK_TIMEOUT_S)
    except sending.SendFailed as exc:
        return _failed_attempt(delivery, status=None, reason=str(exc))
    if not 200 <= status < 300:  # a redirect too: it is not followed
        return _failed_attempt(delivery, status=status, reason=f"answered HTTP {status}")
    delivery.last_status = status
    return _finish(delivery, WebhookDelivery.State.DELIVERED)


def _failed_attempt(delivery: WebhookDelivery, *, status: int | None, reason: str) -> WebhookDelivery:
    """Log why, then give up after the last attempt or leave the next one due after a back-off (the
    outbox flush queues it then)."""
    logger.info("webhook delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, reason)
    delivery.last_status = status  # for operators (admin); the API does not show it
    if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        return _finish(delivery, WebhookDelivery.State.FAILED, error=f"failed after {_attempts(delivery.attempts)}")
    delay = settings.WEBHOOK_BACKOFF_S * 2 ** (delivery.attempts - 1)
    delivery.last_error = f"attempt {delivery.attempts} of {settings.WEBHOOK_MAX_ATTEMPTS} failed; retrying"
    delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    delivery.enqueue_pending = True
    delivery.save()
    return delivery


def give_up(delivery_id: int, reason: str) -> None:
    """Fail a pending delivery without another attempt (its attempts kept killing workers)."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, state=WebhookDelivery.State.PENDING).first()
    if delivery is not None:
        _finish(delivery, WebhookDelivery.State.FAILED, error=reason)


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def _finish(delivery: WebhookDelivery, state: str, error: str = "") -> WebhookDelivery:
    delivery.state = state
    delivery.last_error = error
    delivery.next_attempt_at = None
    if state == WebhookDelivery.State.DELIVERED:
        delivery.delivered_at = timezone.now()
    delivery.save()
    return delivery
