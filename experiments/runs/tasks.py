"""Celery tasks of a run: thin wrappers that take ids, call the engine, and retry transient failures.

A run is a canvas (see `experiments.outbox.send_run`): `prepare` (cpu: state, environment,
alignment) -> one `detector` task per detector (learned ones on `gpu`, classical on `cpu`) in a
chord -> `finish` (leaderboard).

A detector task that fails for good fails only its detector (`engine.fail_detector`, with the
reason): the others go on, and `finish` ends the run `partial` (or `failed` when none finished).
Preparing or finishing failing fails the whole run; a cancel request cancels the whole run.
Each task holds a lease (`experiments.task_leases`): handed out again when its worker dies, and
failed with the reason when its worker died `TASK_MAX_WORKER_DEATHS` times.
"""

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from experiments import heartbeats, outbox
from experiments.models import Run
from experiments.runs import engine, result_files
from experiments.task_leases import leased
from experiments.task_options import TASK_OPTIONS, TRANSIENT_ERRORS

logger = logging.getLogger(__name__)


def _fail(run_id: int, exc: Exception) -> None:
    logger.exception("run %s failed", run_id)
    engine.fail_run(run_id, f"{type(exc).__name__}: {exc}")


def _current(run_id: int, attempt: str | None) -> bool:
    run = Run.objects.filter(pk=run_id).first()
    return run is not None and not engine.is_stale(run, attempt)


def _run_poisoned(run_id: int, attempt: str | None = None, *, reason: str) -> None:
    if _current(run_id, attempt):
        engine.fail_run(run_id, reason)


def _detector_poisoned(run_id: int, detector: str, attempt: str | None = None, *, reason: str) -> None:
    if _current(run_id, attempt):
        engine.fail_detector(run_id, detector, reason)


@shared_task(name=outbox.TASK_PREPARE_RUN, **TASK_OPTIONS)
@leased(_run_poisoned, lambda run_id, attempt=None: f"prepare run {run_id}")
def prepare_run(self, run_id: int, attempt: str | None = None) -> None:
    try:
        engine.prepare_run(run_id, attempt)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - anything else ends the run with its reason
        _fail(run_id, exc)


@shared_task(name=outbox.TASK_RUN_DETECTOR, **TASK_OPTIONS)
@leased(_detector_poisoned, lambda run_id, detector, attempt=None: f"run {run_id}, detector {detector}")
def run_detector(self, run_id: int, detector: str, attempt: str | None = None) -> None:
    try:
        engine.run_detector(run_id, detector, attempt)
    except engine.RunCancelled:
        engine.fail_run(run_id, "cancelled")
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # anything else fails this detector only, with its reason
        logger.exception("detector %s of run %s failed", detector, run_id)
        engine.fail_detector(run_id, detector, f"{type(exc).__name__}: {exc}")


@shared_task(name=outbox.TASK_FINISH_RUN, **TASK_OPTIONS)
@leased(_run_poisoned, lambda run_id, attempt=None: f"finish run {run_id}")
def finish_run(self, run_id: int, attempt: str | None = None) -> None:
    try:
        engine.finish_run(run_id, attempt)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001
        _fail(run_id, exc)


@worker_ready.connect
def free_result_folders_while_running(**kwargs) -> None:
    """Every `RESULT_FREE_SWEEP_S`, each worker removes the result folders of deleted runs whose
    grace has passed (`result_files.free_due`)."""
    heartbeats.start_periodic(result_files.free_due, settings.RESULT_FREE_SWEEP_S, "result-folder-sweep")
