"""Webhooks: each user's signing secret and every delivery."""

from django.conf import settings
from django.db import models

from experiments.models.runs import Run


class WebhookSecret(models.Model):
    """The key a user's webhook deliveries are signed with (HMAC-SHA256); shown once, rotatable."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret")
    secret = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"webhook secret of {self.owner}"


class WebhookDelivery(models.Model):
    """One signed POST of an event (a run finished) to an experiment's webhook URL, retried with back-off."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        REFUSED = "refused"  # not a public address when the attempt was due: never sent
        FAILED = "failed"  # gave up after the last attempt

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_deliveries")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_deliveries")
    url = models.URLField(max_length=500)
    event = models.CharField(max_length=50)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveIntegerField(null=True, blank=True)  # for operators; never shown to the owner
    last_error = models.TextField(blank=True)  # what the owner sees: no receiver answer, no network error
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    enqueue_pending = models.BooleanField(default=False, help_text="queueing failed (broker down); retried later")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.event} to {self.url} ({self.state})"
