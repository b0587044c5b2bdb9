"""The Celery task of a training job: takes an id, calls the training engine, retries transient failures."""

import logging

from celery import shared_task

from experiments import outbox
from experiments.runs.tasks import TASK_OPTIONS, TRANSIENT_ERRORS
from experiments.training import engine

logger = logging.getLogger(__name__)


@shared_task(name=outbox.TASK_TRAIN, **TASK_OPTIONS)
def train_detector_job(self, job_id: int) -> None:
    try:
        engine.execute_training(job_id)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        engine.fail_training(job_id, f"{type(exc).__name__}: {exc}")
