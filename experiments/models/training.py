"""Trained checkpoints and the training jobs that make them."""

from django.conf import settings
from django.db import models

from experiments.models.datasets import Dataset
from experiments.models.runs import QueuedWork


class ModelCheckpoint(models.Model):
    """Weights for a learned detector; `weights="auto"` picks the newest one per detector.

    ``origin`` says who wrote the file: our training (``trained``), the shipped demo weights
    (``shipped``) or a user's upload (``uploaded``). An uploaded one is never `torch.load`ed by a worker
    or the web server: runs load its ``tensors_key``, a safetensors copy written by the sandbox that
    checked it (`inference.checkpoint_checks`)."""

    class Origin(models.TextChoices):
        TRAINED = "trained"
        SHIPPED = "shipped"
        UPLOADED = "uploaded"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="checkpoints"
    )
    detector = models.CharField(max_length=100, db_index=True)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL)
    file_key = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, db_index=True)
    epochs = models.PositiveIntegerField(default=0)
    val_metrics = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    is_public = models.BooleanField(default=False, help_text="shipped demo weights visible to every user")
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.UPLOADED)
    tensors_key = models.CharField(max_length=500, blank=True, default="", help_text="safetensors copy (uploads)")
    tensors_sha256 = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "sha256"], name="unique_checkpoint_per_owner")]

    def __str__(self):
        return f"{self.detector} checkpoint {self.sha256[:12]}"

    @property
    def provenance(self):
        return f"checkpoint:{self.sha256}"


class TrainingJob(QueuedWork):
    """Training one learned detector on a dataset; produces a ModelCheckpoint."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="training_jobs")
    detector = models.CharField(max_length=100)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="training_jobs")
    config = models.JSONField(default=dict, help_text="epochs, loss, size, seed, batch_size, lr")
    progress = models.JSONField(default=dict, blank=True, help_text="stage, epoch, loss, val F1, ETA, history")
    checkpoint = models.ForeignKey(ModelCheckpoint, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta(QueuedWork.Meta):
        pass

    def __str__(self):
        return f"training {self.detector} on {self.dataset} ({self.state})"
