"""Experiments, their runs, each pair's result and alignment, and the states a run goes through."""

from django.conf import settings
from django.db import models

from experiments.models.datasets import Dataset, ImagePair


class Scaling(models.TextChoices):
    """How a learned detector sees a pair larger than its input size."""

    AUTO = "auto"  # tile when B is more than twice the input size, else resize
    RESIZE = "resize"  # the whole pair resized to the input size, the map resized back
    TILE = "tile"  # sliding windows at the input size, with overlap, blended back


class ThresholdRule(models.TextChoices):
    """How each detector's threshold is set (see `experiments.runs.threshold_rules`)."""

    FIXED = "fixed"  # the experiment's `threshold` for every detector
    VALIDATION = "validation"  # F1-optimal on the validation pairs, frozen, applied to the scored pairs


class Experiment(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="experiments")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=200)
    detectors = models.JSONField(help_text="registry names of the detectors to compare")
    align = models.BooleanField(default=False, help_text="warp A onto B before detection")
    threshold = models.FloatField(default=0.5)
    threshold_rule = models.CharField(max_length=10, choices=ThresholdRule.choices, default=ThresholdRule.FIXED)
    validation_holdout = models.FloatField(
        null=True, blank=True, help_text="validation rule without a val split: the seeded share of train pairs held out"
    )
    input_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="an override for every learned detector; empty: each detector's own size"
    )
    splits = models.JSONField(
        default=list, blank=True, help_text='the dataset splits scored, e.g. ["test"]; empty: every pair'
    )
    scaling = models.CharField(max_length=6, choices=Scaling.choices, default=Scaling.AUTO)
    seed = models.IntegerField(default=0)
    detector_weights = models.JSONField(
        default=dict, blank=True, help_text='per detector: "auto", "random" or "checkpoint:<sha256>"'
    )
    baseline_detector = models.CharField(max_length=100, blank=True)
    webhook_url = models.URLField(
        max_length=500, blank=True, help_text="POSTed a signed event when each of its runs finishes"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    def settings_record(self):
        return {
            "align": self.align,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "validation_holdout": self.validation_holdout,
            "input_size": self.input_size,
            "splits": list(self.splits),
            "scaling": self.scaling,
            "seed": self.seed,
        }


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # a run only: some detectors finished, others failed (each with its reason)
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATES = (RunState.QUEUED, RunState.RUNNING)
FINISHED_RUN_STATES = (RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED, RunState.CANCELLED)
# A leaderboard exists: every detector finished, or some did (the failed ones are rows with their reason).
LEADERBOARD_RUN_STATES = (RunState.SUCCEEDED, RunState.PARTIAL)
# Retry queues these again; results already stored are kept and skipped.
RETRYABLE_RUN_STATES = (RunState.PARTIAL, RunState.FAILED, RunState.CANCELLED)


class QueuedWork(models.Model):
    """What runs and training jobs share: a state machine, progress, cancel and queueing flags, times."""

    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    enqueue_pending = models.BooleanField(default=False, help_text="queueing failed (broker down); retried later")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_finished(self):
        return self.state in FINISHED_RUN_STATES


class Run(QueuedWork):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress = models.JSONField(default=dict, blank=True, help_text="per-detector progress, stage, rate")
    environment = models.JSONField(default=dict, blank=True, help_text="reproducibility record")
    leaderboard = models.JSONField(default=dict, blank=True)
    cloned_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)

    class Meta(QueuedWork.Meta):
        pass

    def __str__(self):
        return f"run {self.pk} of {self.experiment}"

    @property
    def owner(self):
        return self.experiment.owner

    @property
    def duration_s(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Result(models.Model):
    """One detector on one pair in one run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="results")
    pair = models.ForeignKey(ImagePair, on_delete=models.CASCADE, related_name="results")
    detector = models.CharField(max_length=100)
    metrics = models.JSONField(default=dict, blank=True)
    iou = models.FloatField(null=True, blank=True)
    f1 = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)
    weights = models.CharField(max_length=100, blank=True, help_text="weights provenance")
    heatmap_key = models.CharField(max_length=500, blank=True)
    mask_key = models.CharField(max_length=500, blank=True)
    error_map_key = models.CharField(max_length=500, blank=True)
    from_cache = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "detector", "pair"]
        constraints = [
            models.UniqueConstraint(fields=["run", "pair", "detector"], name="unique_result_per_run_pair_detector")
        ]

    def __str__(self):
        return f"{self.detector} on {self.pair} (run {self.run_id})"


class PairAlignment(models.Model):
    """How A was warped onto B for one pair in one run (computed once, shared by all detectors)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="alignments")
    pair = models.ForeignKey(ImagePair, on_delete=models.CASCADE, related_name="alignments")
    method = models.CharField(max_length=20)
    ok = models.BooleanField()
    homography = models.JSONField()
    matches = models.PositiveIntegerField(default=0)
    inliers = models.PositiveIntegerField(default=0)
    inlier_ratio = models.FloatField(default=0.0)
    reprojection_error = models.FloatField(null=True, blank=True)
    warped_a_key = models.CharField(max_length=500)
    valid_mask_key = models.CharField(max_length=500)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "pair"], name="unique_alignment_per_run_pair")]

    def __str__(self):
        return f"alignment of {self.pair} in run {self.run_id} ({self.method})"
