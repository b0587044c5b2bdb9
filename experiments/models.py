"""Domain models: datasets of image pairs, experiments, runs, results, trained checkpoints."""

import hashlib

from django.conf import settings
from django.db import models


def pair_fingerprint(a_sha256: str, b_sha256: str) -> str:
    """What a pair's images are, whatever its name or dataset: the same A and B give the same print.
    Checkpoints record the prints of the pairs they were trained and validated on."""
    return hashlib.sha256(f"{a_sha256}:{b_sha256}".encode()).hexdigest()


class Dataset(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    hidden = models.BooleanField(
        default=False, help_text="created for a batch job; not listed with the user's datasets"
    )
    leakage = models.JSONField(default=dict, blank=True, help_text="summary of the last leakage audit")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_dataset_name_per_owner")]

    def __str__(self):
        return self.name


class Split(models.TextChoices):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"
    NONE = "", "unassigned"


class ImagePair(models.Model):
    """Image A ("before") and B ("after"), with an optional change mask in B's frame."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="pairs")
    name = models.CharField(max_length=255)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    split = models.CharField(max_length=5, choices=Split.choices, blank=True, default=Split.NONE)
    image_a = models.CharField(max_length=500, help_text="storage key")
    image_b = models.CharField(max_length=500, help_text="storage key")
    label = models.CharField(max_length=500, blank=True, help_text="storage key of the mask (255 = changed)")
    a_sha256 = models.CharField(max_length=64)
    b_sha256 = models.CharField(max_length=64)
    label_sha256 = models.CharField(max_length=64, blank=True)
    a_width = models.PositiveIntegerField()
    a_height = models.PositiveIntegerField()
    b_width = models.PositiveIntegerField()
    b_height = models.PositiveIntegerField()
    a_bytes = models.PositiveBigIntegerField()
    b_bytes = models.PositiveBigIntegerField()
    a_print = models.TextField(blank=True, help_text="near-duplicate fingerprint of A (inference.near_duplicates)")
    b_print = models.TextField(blank=True, help_text="near-duplicate fingerprint of B")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        # Official layouts (LEVIR-CD's train/val/test) reuse names across splits; within a split a name is one pair.
        constraints = [
            models.UniqueConstraint(fields=["dataset", "split", "name"], name="unique_pair_name_per_dataset_split")
        ]

    def __str__(self):
        return self.name

    @property
    def fingerprint(self) -> str:
        return pair_fingerprint(self.a_sha256, self.b_sha256)

    @property
    def has_label(self):
        return bool(self.label)


class Scaling(models.TextChoices):
    """How a learned detector sees a pair larger than its input size."""

    AUTO = "auto"  # tile when B is more than twice the input size, else resize
    RESIZE = "resize"  # the whole pair resized to the input size, the map resized back
    TILE = "tile"  # sliding windows at the input size, with overlap, blended back


class Experiment(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="experiments")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=200)
    detectors = models.JSONField(help_text="registry names of the detectors to compare")
    align = models.BooleanField(default=False, help_text="warp A onto B before detection")
    threshold = models.FloatField(default=0.5)
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


class ModelCheckpoint(models.Model):
    """Weights trained on the platform; `weights="auto"` picks the newest one per detector."""

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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "sha256"], name="unique_checkpoint_per_owner")]

    def __str__(self):
        return f"{self.detector} checkpoint {self.sha256[:12]}"

    @property
    def provenance(self):
        return f"checkpoint:{self.sha256}"


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


class TaskLease(models.Model):
    """One Celery task (by its id, which a redelivered or restored message keeps) held by a worker:
    how many deliveries it had, how many of them died with their worker, the holder's heartbeat,
    and whether it ended. See `experiments.task_leases`."""

    task_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=100)
    work = models.CharField(max_length=200, help_text="what the task does, e.g. run 5, detector absdiff")
    deliveries = models.PositiveIntegerField(default=0)
    deaths = models.PositiveIntegerField(default=0, help_text="deliveries whose worker died before they ended")
    running = models.BooleanField(default=False, db_index=True)
    holder = models.CharField(max_length=32, blank=True, help_text="the delivery now running it")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.task_name} {self.task_id} ({self.work})"


from experiments.datasets.leakage_models import LeakageFinding  # noqa: E402, F401 - registers the model
