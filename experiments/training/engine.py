"""Training a detector inside a Celery worker, with live progress and a registered checkpoint."""

import hashlib
import logging
import tempfile
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from experiments import heartbeats, storage
from experiments.checkpoints.services import checkpoint_register
from experiments.errors import InvalidState
from experiments.lifecycle import training_transition
from experiments.live import progress
from experiments.models import RunState, TrainingJob
from inference.training_config import OPTION_NAMES, training_config

logger = logging.getLogger(__name__)
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
        self.state: dict = {}
        self.lock = threading.Lock()

    def __call__(self, update: dict) -> None:
        epoch_done = update.get("stage") == "epoch"
        if epoch_done:
            self.history.append({k: update.get(k) for k in HISTORY_FIELDS})
        with self.lock:
            self.state = {**update, "history": self.history}
            if epoch_done or time.monotonic() - self.last_persist >= PERSIST_EVERY_S:
                self._persist()
        progress.publish_training_progress(self.job_id, update)
        if self.listener is not None:
            self.listener(update)

    def _persist(self) -> None:
        state = {**self.state, "heartbeat_at": time.time()}
        TrainingJob.objects.filter(pk=self.job_id, state=RunState.RUNNING).update(progress=state)
        self.last_persist = time.monotonic()

    def beat(self) -> None:
        """Say that this job's worker is alive: the last progress, with a fresh heartbeat."""
        with self.lock:
            self._persist()

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
    job = training_transition(job_id, RunState.RUNNING, progress={**job.progress, "heartbeat_at": time.time()})
    config = training_config({k: v for k, v in job.config.items() if k in OPTION_NAMES})
    train, val = split_pairs(list(job.dataset.pairs.exclude(label="")), config.seed)
    reporter = TrainingReporter(job_id, listener)
    stop_heartbeat = _start_heartbeat(reporter)
    try:
        reporter({"stage": "loading", "pairs_train": len(train), "pairs_val": len(val)})
        result = train_detector(
            job.detector, _load_triples(train), _load_triples(val),
            on_progress=reporter, should_stop=reporter.should_stop, **config.as_dict(),
        )  # fmt: skip
        if result.cancelled:
            training_transition(job_id, RunState.CANCELLED)
            return
        checkpoint = store_checkpoint(job, result, trained_on={"train": _prints(train), "val": _prints(val)})
    finally:
        stop_heartbeat()
    training_transition(job_id, RunState.SUCCEEDED, checkpoint=checkpoint,
               progress={**job.progress, "stage": "done", "history": result.history})  # fmt: skip


def _start_heartbeat(reporter: TrainingReporter, every_s: float | None = None):
    """A daemon thread that writes `progress["heartbeat_at"]` (Unix time) for `reporter`'s job every
    `TASK_HEARTBEAT_S`, even when the training reports nothing (loading pairs, a long epoch, saving
    the checkpoint), until the returned function is called."""
    every_s = every_s or settings.TASK_HEARTBEAT_S
    return heartbeats.start_beating(reporter.beat, every_s, f"training-heartbeat-{reporter.job_id}")


def stale_message(silent_s: float) -> str:
    return f"the worker training this job stopped (no heartbeat for {int(silent_s)} s); start it again"


def fail_stale_training(stale_after_s: float | None = None) -> list[int]:
    """Fail `running` training jobs whose worker stopped: no heartbeat (or, before the first one, no
    start) for more than `stale_after_s` (default `TRAINING_HEARTBEAT_TIMEOUT_S`). Returns their ids.

    A worker killed mid-job (SIGKILL, out of memory, a lost machine) leaves its job `running`; its
    redelivered task skips a job already taken, so without this the job would stay `running` forever."""
    limit = settings.TRAINING_HEARTBEAT_TIMEOUT_S if stale_after_s is None else stale_after_s
    failed = []
    for job_id in TrainingJob.objects.filter(state=RunState.RUNNING).values_list("pk", flat=True):
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update().filter(pk=job_id, state=RunState.RUNNING).first()
            if job is None:
                continue
            silent_s = _silent_for(job)
            if silent_s is None or silent_s <= limit:
                continue
            try:
                training_transition(job_id, RunState.FAILED, error=stale_message(silent_s))
            except InvalidState:
                continue
        logger.warning("training job %s failed: no heartbeat for %d s", job_id, silent_s)
        failed.append(job_id)
    return failed


def _silent_for(job: TrainingJob) -> float | None:
    beat = job.progress.get("heartbeat_at") if isinstance(job.progress, dict) else None
    if isinstance(beat, (int, float)) and not isinstance(beat, bool):
        last = float(beat)
    elif job.started_at is not None:
        last = job.started_at.timestamp()
    else:
        return None
    return max(0.0, time.time() - last)


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
