"""Reads of webhook deliveries: a user's own, made to their experiments' URLs."""

from django.db.models import QuerySet

from experiments.models import WebhookDelivery
from experiments.visibility import owned_by


def own_deliveries(user) -> QuerySet:
    return owned_by(WebhookDelivery.objects.all(), user, "owner", staff_sees_all=False)
