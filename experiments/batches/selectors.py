"""Reads of batch jobs, filtered to what the user may see."""

from django.db.models import QuerySet

from experiments.models import BatchJob
from experiments.visibility import owned_by


def batches_visible_to(user) -> QuerySet:
    return owned_by(BatchJob.objects.select_related("run"), user, "owner")


def own_batches(user) -> QuerySet:
    """The user's own batch jobs (staff included: their list is theirs too)."""
    return owned_by(BatchJob.objects.select_related("run"), user, "owner", staff_sees_all=False)
