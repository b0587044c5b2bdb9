"""Signed webhook deliveries: one when a run of an experiment with a webhook URL finishes.

Each delivery is a POST of JSON with headers
``X-Diffplatform-Event``, ``X-Diffplatform-Delivery`` (its id), ``X-Diffplatform-Timestamp`` and
``X-Diffplatform-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"`` under the
owner's webhook secret. A delivery that fails (network error or a non-2xx answer) is retried with
exponential back-off up to ``WEBHOOK_MAX_ATTEMPTS``; one to a refused address fails at once.
"""

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from experiments.models import Run, WebhookDelivery, WebhookSecret
from experiments.notifications.addresses import AddressRefused, check_webhook_url

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
    """One attempt; on failure the next one is queued after a back-off, until the attempts run out."""
    delivery = WebhookDelivery.objects.select_related("owner").get(pk=delivery_id)
    if delivery.state != WebhookDelivery.State.PENDING:
        return delivery
    delivery.attempts += 1
    try:
        check_webhook_url(delivery.url)
    except AddressRefused as exc:
        return _finish(delivery, WebhookDelivery.State.FAILED, error=str(exc))
    body = json.dumps(delivery.payload, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "diffplatform-webhook/1",
            "X-Diffplatform-Event": delivery.event,
            "X-Diffplatform-Delivery": str(delivery.pk),
            "X-Diffplatform-Timestamp": timestamp,
            "X-Diffplatform-Signature": signature(secret_for(delivery.owner).secret, timestamp, body),
        },
    )
    opener = urllib.request.build_opener(_NoRedirects)  # a redirect could point at a refused address
    try:
        with opener.open(request, timeout=settings.WEBHOOK_TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        status, error = None, f"could not connect: {getattr(exc, 'reason', exc)}"
    else:
        error = "" if 200 <= status < 300 else f"answered HTTP {status}"
    delivery.last_status = status
    if not error:
        return _finish(delivery, WebhookDelivery.State.DELIVERED)
    if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        return _finish(delivery, WebhookDelivery.State.FAILED, error=f"{error} (gave up after {delivery.attempts})")
    delay = settings.WEBHOOK_BACKOFF_S * 2 ** (delivery.attempts - 1)
    delivery.last_error = error
    delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    delivery.save()
    from experiments import outbox

    transaction.on_commit(lambda: outbox.send_webhook(delivery.pk, countdown=delay))
    return delivery


def give_up(delivery_id: int, reason: str) -> None:
    """Fail a pending delivery without another attempt (its attempts kept killing workers)."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id, state=WebhookDelivery.State.PENDING).first()
    if delivery is not None:
        _finish(delivery, WebhookDelivery.State.FAILED, error=reason)


def _finish(delivery: WebhookDelivery, state: str, error: str = "") -> WebhookDelivery:
    delivery.state = state
    delivery.last_error = error
    delivery.next_attempt_at = None
    if state == WebhookDelivery.State.DELIVERED:
        delivery.delivered_at = timezone.now()
    delivery.save()
    if error:
        logger.warning("webhook delivery %s failed: %s", delivery.pk, error)
    return delivery


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} not followed", headers, fp)
