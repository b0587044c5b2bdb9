"""Celery tasks: thin wrappers that take ids, call the engine, and retry transient failures.

A run is a canvas: `prepare_run` (cpu: state, environment, alignment) -> one `run_detector` per
detector (learned ones on `gpu`, classical on `cpu`) in a chord -> `finish_run` (leaderboard).
"""

import logging

from celery import chain, chord, shared_task
from celery.signals import worker_ready
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from experiments import engine
from inference.catalogue import catalogue_entry

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
RETRY_POLICY = {"max_retries": 5, "retry_backoff": True, "retry_backoff_max": 60, "retry_jitter": True}


def enqueue_run(run_id: int) -> None:
    """Queue a run's canvas. Called from `transaction.on_commit`, so workers see the run row."""
    from experiments.models import Run

    run = Run.objects.select_related("experiment").get(pk=run_id)
    detector_tasks = [
        run_detector.si(run_id, name).set(queue=catalogue_entry(name).queue) for name in run.experiment.detectors
    ]
    canvas = chain(
        prepare_run.si(run_id).set(queue="cpu"),
        chord(detector_tasks, finish_run.si(run_id).set(queue="cpu")),
    )
    canvas.apply_async()


def _fail(run_id: int, exc: Exception) -> None:
    logger.exception("run %s failed", run_id)
    engine.fail_run(run_id, f"{type(exc).__name__}: {exc}")


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT_ERRORS, **RETRY_POLICY)
def prepare_run(self, run_id: int) -> None:
    try:
        engine.prepare_run(run_id)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - anything else ends the run with its reason
        _fail(run_id, exc)


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT_ERRORS, **RETRY_POLICY)
def run_detector(self, run_id: int, detector: str) -> None:
    try:
        engine.run_detector(run_id, detector)
    except engine.RunCancelled:
        engine.fail_run(run_id, "cancelled")
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001
        _fail(run_id, exc)


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT_ERRORS, **RETRY_POLICY)
def finish_run(self, run_id: int) -> None:
    try:
        engine.finish_run(run_id)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001
        _fail(run_id, exc)


@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT_ERRORS, **RETRY_POLICY)
def train_detector_job(self, job_id: int) -> None:
    from experiments import training_engine

    try:
        training_engine.execute_training(job_id)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        training_engine.fail_training(job_id, f"{type(exc).__name__}: {exc}")


@worker_ready.connect
def flush_outbox_while_running(**kwargs) -> None:
    """Each worker queues work left pending by a broker outage, now and every few seconds."""
    from experiments import outbox

    try:
        outbox.flush_pending()
    except Exception:
        logger.warning("outbox flush at start-up failed", exc_info=True)
    outbox.start_flusher()
