"""The Celery task of a training job: takes an id, calls the training engine, retries transient failures."""

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from experiments import heartbeats, outbox
from experiments.task_leases import leased
from experiments.task_options import TASK_OPTIONS, TRANSIENT_ERRORS
from experiments.training import engine

logger = logging.getLogger(__name__)


def _poisoned(job_id: int, *, reason: str) -> None:
    engine.fail_training(job_id, reason)


@shared_task(name=outbox.TASK_TRAIN, **TASK_OPTIONS)
@leased(_poisoned, lambda job_id: f"training job {job_id}")
def train_detector_job(self, job_id: int) -> None:
    try:
        engine.execute_training(job_id)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        engine.fail_training(job_id, f"{type(exc).__name__}: {exc}")


def check_stale_training() -> list[int]:
    try:
        return engine.fail_stale_training()
    except Exception:
        logger.warning("the check for training jobs whose worker stopped failed", exc_info=True)
        return []


def start_stale_training_check(interval_s: float | None = None):
    """A daemon thread in each worker that fails training jobs whose worker stopped beating."""
    interval = interval_s or settings.TRAINING_STALE_CHECK_INTERVAL_S
    return heartbeats.start_periodic(check_stale_training, interval, "stale-training-check")


@worker_ready.connect
def check_stale_training_while_running(**kwargs) -> None:
    """On start-up and every `TRAINING_STALE_CHECK_INTERVAL_S`, each worker fails the training jobs
    whose worker died (no heartbeat for `TRAINING_HEARTBEAT_TIMEOUT_S`)."""
    check_stale_training()
    start_stale_training_check()
