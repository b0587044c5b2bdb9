"""Reads of training jobs, filtered to what the user may see."""

from django.db.models import QuerySet

from experiments.models import TrainingJob
from experiments.visibility import owned_by


def training_jobs_visible_to(user) -> QuerySet:
    return owned_by(TrainingJob.objects.select_related("dataset", "checkpoint"), user, "owner")
