"""Training a detector inside a Celery worker, with live progress and a registered checkpoint."""

import hashlib
import tempfile
import time
from pathlib import Path

from django.db import transaction

from experiments import storage
from experiments.checkpoints.services import checkpoint_register
from experiments.lifecycle import training_transition
from experiments.live import progress
from experiments.models import RunState, TrainingJob
from inference.training_config import OPTION_NAMES, training_config

PERSIST_EVERY_S = 1.0
VAL_FRACTION = 0.2
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_f1", "val_iou", "seconds")


def _load_triples(pairs):
    from inference.images import load_image, load_mask

    triples = []
    for pair in pairs:
        a = load_image(storage.read_bytes(pair.image_a))
        b = load_image(storage.read_bytes(pair.image_b))
        label, _ = load_mask(storage.read_bytes(pair.label))
        triples.append((a, b, label))
    return triples


def split_pairs(pairs, seed: int):
    """Train on the `train` split (and unassigned pairs), validate on `val`; without a `val`
    split, hold out a seeded 20% of the pairs."""
    import random

    train = [p for p in pairs if p.split in ("train", "")]
    val = [p for p in pairs if p.split == "val"]
    if not val:
        shuffled = sorted(train, key=lambda p: p.name)
        random.Random(seed).shuffle(shuffled)
        cut = max(1, int(len(shuffled) * VAL_FRACTION))
        val, train = shuffled[:cut], shuffled[cut:]
    return train, val


class TrainingReporter:
    def __init__(self, job_id: int, listener=None):
        self.job_id = job_id
        self.listener = listener
        self.last_persist = 0.0
        self.history: list[dict] = []
        self.last_cancel_check = 0.0
        self.cancelled = False

    def __call__(self, update: dict) -> None:
        epoch_done = update.get("stage") == "epoch"
        if epoch_done:
            self.history.append({k: update.get(k) for k in HISTORY_FIELDS})
        state = {**update, "history": self.history}
        if epoch_done or time.monotonic() - self.last_persist >= PERSIST_EVERY_S:
            TrainingJob.objects.filter(pk=self.job_id).update(progress=state)
            self.last_persist = time.monotonic()
        progress.publish_training_progress(self.job_id, update)
        if self.listener is not None:
            self.listener(update)

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_cancel_check >= 1.0:
            self.cancelled = TrainingJob.objects.filter(pk=self.job_id, cancel_requested=True).exists()
            self.last_cancel_check = time.monotonic()
        return self.cancelled


def execute_training(job_id: int, listener=None) -> None:
    """Train; `listener(update)` also receives every progress update (the CLI draws a bar)."""
    from inference.training import train_detector

    job = TrainingJob.objects.select_related("dataset", "owner").get(pk=job_id)
    if job.cancel_requested:
        training_transition(job_id, RunState.CANCELLED)
        return
    if job.state != RunState.QUEUED:
        return  # a redelivered task for a job already taken
    job = training_transition(job_id, RunState.RUNNING)
    config = training_config({k: v for k, v in job.config.items() if k in OPTION_NAMES})
    train, val = split_pairs(list(job.dataset.pairs.exclude(label="")), config.seed)
    reporter = TrainingReporter(job_id, listener)
    reporter({"stage": "loading", "pairs_train": len(train), "pairs_val": len(val)})
    result = train_detector(
        job.detector, _load_triples(train), _load_triples(val),
        on_progress=reporter, should_stop=reporter.should_stop, **config.as_dict(),
    )  # fmt: skip
    if result.cancelled:
        training_transition(job_id, RunState.CANCELLED)
        return
    checkpoint = store_checkpoint(job, result, trained_on={"train": _prints(train), "val": _prints(val)})
    training_transition(job_id, RunState.SUCCEEDED, checkpoint=checkpoint,
               progress={**job.progress, "stage": "done", "history": result.history})  # fmt: skip


def _prints(pairs) -> list[str]:
    return sorted(pair.fingerprint for pair in pairs)


def store_checkpoint(job: TrainingJob, result, trained_on: dict):
    """Register the trained weights; `trained_on` holds the fingerprints of the train and val pairs, so
    a run that scores one of them can say so."""
    from inference.training import save_training_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{job.detector}.pt"
        save_training_checkpoint(
            result, path, detector=job.detector, dataset_name=job.dataset.name, trained_on=trained_on
        )
        data = path.read_bytes()
    with transaction.atomic():
        return checkpoint_register(
            owner=job.owner, detector=job.detector, dataset=job.dataset, data=data,
            sha256=hashlib.sha256(data).hexdigest(), epochs=len(result.history),
            val_metrics=result.val_metrics, config={**result.config, "training_job": job.pk, "trained_on": trained_on},
        )  # fmt: skip


def fail_training(job_id: int, message: str) -> None:
    job = TrainingJob.objects.get(pk=job_id)
    if job.state in (RunState.QUEUED, RunState.RUNNING):
        training_transition(
            job_id, RunState.CANCELLED if job.cancel_requested else RunState.FAILED, error=message[:5000]
        )
