"""What researchers bring in: their ONNX models and their prediction sets (maps made elsewhere)."""

from django.conf import settings
from django.db import models

from experiments.models.datasets import Dataset, ImagePair


class UploadedModel(models.Model):
    """A user's own change detector as an ONNX file, run with onnxruntime as detector `onnx:<name>`
    once a worker has validated it. Never executed as code: the file is a graph of standard operators."""

    class State(models.TextChoices):
        VALIDATING = "validating"
        READY = "ready"
        REJECTED = "rejected"

    class Inputs(models.TextChoices):
        TWO = "two", "two tensors, A and B"
        CONCAT6 = "concat6", "one 6-channel tensor (A then B)"

    class Output(models.TextChoices):
        LOGITS = "logits"
        PROBABILITY = "probability"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploaded_models")
    name = models.CharField(max_length=90)
    file_key = models.CharField(max_length=500, help_text="storage key of the .onnx file")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    input_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="square input in pixels; empty: any (fully convolutional, run at B's size)"
    )
    mean = models.JSONField(help_text="three numbers subtracted from RGB scaled to [0, 1]")
    std = models.JSONField(help_text="three numbers the RGB values are divided by after the mean")
    inputs = models.CharField(max_length=8, choices=Inputs.choices)
    output = models.CharField(max_length=12, choices=Output.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.VALIDATING, db_index=True)
    reason = models.TextField(blank=True, help_text="why the model was rejected")
    probe = models.JSONField(default=dict, blank=True, help_text="what validation measured: shapes, opset, time")
    enqueue_pending = models.BooleanField(default=False, help_text="queueing failed (broker down); retried later")
    created_at = models.DateTimeField(auto_now_add=True)
    validated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_uploaded_model_name_per_owner")]

    def __str__(self):
        return self.detector_name

    @property
    def detector_name(self) -> str:
        return f"onnx:{self.name}"


class PredictionSet(models.Model):
    """Maps made elsewhere (a published model, another lab's code) for every pair of one dataset,
    scored like any detector as `external:<name>` in experiments on that dataset."""

    class Kind(models.TextChoices):
        MASK = "mask"
        PROBABILITY = "probability"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prediction_sets")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="prediction_sets")
    name = models.CharField(max_length=90)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    archive_sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField(default=0, help_text="bytes of its stored maps (storage quota)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="unique_prediction_set_per_dataset")]

    def __str__(self):
        return self.detector_name

    @property
    def detector_name(self) -> str:
        return f"external:{self.name}"


class PairPrediction(models.Model):
    """One pair's uploaded map: a probability in [0, 1] per pixel of B (a mask is 0 or 1)."""

    prediction_set = models.ForeignKey(PredictionSet, on_delete=models.CASCADE, related_name="predictions")
    pair = models.ForeignKey(ImagePair, on_delete=models.CASCADE, related_name="predictions")
    file_key = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prediction_set", "pair"], name="unique_prediction_per_set_pair")
        ]

    def __str__(self):
        return f"{self.prediction_set} on {self.pair}"
