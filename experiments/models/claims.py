"""`ClaimedFigure`: a figure someone claims for a detector (a paper's, a thesis's, a model card's),
kept beside what the platform measures so the two can be compared (`experiments.claims.selectors`).

A claim belongs to exactly one thing: a registered detector by name (the claims shipped with the
platform, owner empty, e.g. the thesis's for its three models), or a user's checkpoint, uploaded
ONNX model or prediction set (owner = that thing's owner)."""

from django.conf import settings
from django.db import models


class ClaimedMetric(models.TextChoices):
    IOU = "iou", "IoU"
    F1 = "f1", "F1"
    PRECISION = "precision", "Precision"
    RECALL = "recall", "Recall"
    LATENCY_MS = "latency_ms", "Time per pair (ms)"
    MEMORY_MB = "memory_mb", "Model memory (MB)"


class ClaimedFigure(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="claimed_figures"
    )  # empty: shipped with the platform, shown to everyone
    detector = models.CharField(max_length=100, blank=True, help_text="registry name (built-in claims)")
    checkpoint = models.ForeignKey(
        "experiments.ModelCheckpoint", on_delete=models.CASCADE, null=True, blank=True, related_name="claims"
    )
    uploaded_model = models.ForeignKey(
        "experiments.UploadedModel", on_delete=models.CASCADE, null=True, blank=True, related_name="claims"
    )
    prediction_set = models.ForeignKey(
        "experiments.PredictionSet", on_delete=models.CASCADE, null=True, blank=True, related_name="claims"
    )
    source = models.CharField(max_length=300, help_text="where the figure is claimed (paper, thesis, model card)")
    dataset = models.CharField(max_length=200, blank=True, help_text="the data it was measured on, as the source says")
    metric = models.CharField(max_length=20, choices=ClaimedMetric.choices)
    value = models.FloatField()
    hardware = models.CharField(max_length=200, blank=True, help_text="the machine it was measured on, as stated")
    input_size = models.PositiveIntegerField(null=True, blank=True, help_text="the input size it was measured at")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "experiments"
        ordering = ["metric", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        detector__gt="",
                        checkpoint__isnull=True,
                        uploaded_model__isnull=True,
                        prediction_set__isnull=True,
                    )
                    | models.Q(
                        detector="", checkpoint__isnull=False, uploaded_model__isnull=True, prediction_set__isnull=True
                    )
                    | models.Q(
                        detector="", checkpoint__isnull=True, uploaded_model__isnull=False, prediction_set__isnull=True
                    )
                    | models.Q(
                        detector="", checkpoint__isnull=True, uploaded_model__isnull=True, prediction_set__isnull=False
                    )
                ),
                name="claimed_figure_has_one_subject",
            )
        ]

    def __str__(self):
        return f"{self.metric}={self.value} ({self.source})"
