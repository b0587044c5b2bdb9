"""Batch jobs: a dataset, a run and an archive made in one call."""

from django.conf import settings
from django.db import models

from experiments.models.runs import Run


class BatchJob(models.Model):
    """Many pairs through chosen detectors for an integration; backed by a dataset and a run."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batch_jobs")
    idempotency_key = models.CharField(max_length=200, blank=True)
    payload_sha256 = models.CharField(max_length=64)
    detectors = models.JSONField()
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="batch_jobs")
    archive_key = models.CharField(max_length=500, blank=True, help_text="zip of masks, heatmaps, metrics CSV")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_batch_idempotency_key_per_owner",
            )
        ]

    def __str__(self):
        return f"batch {self.pk} of {self.owner}"
