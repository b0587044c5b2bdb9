"""Queueing work that survives a broker outage.

Runs and training jobs are queued after their transaction commits. If Redis (the broker) is down
then, the row is kept `queued` with `enqueue_pending` set instead of failing the request; every
worker retries pending rows periodically (and at start-up), so work queued during an outage
proceeds when Redis returns. Claiming a row clears its flag atomically, so two workers never
queue the same work twice.
"""

import logging
import threading

from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from experiments.models import Run, RunState, TrainingJob

logger = logging.getLogger(__name__)
BROKER_UNAVAILABLE = (BrokerError, RedisError, OSError)


def _send_run(run_id: int) -> None:
    from experiments.tasks import enqueue_run

    enqueue_run(run_id)


def _send_training(job_id: int) -> None:
    from experiments.tasks import train_detector_job

    train_detector_job.apply_async(args=[job_id], queue="gpu")


SENDERS = {Run: _send_run, TrainingJob: _send_training}


def _caused_by_outage(exc: BaseException) -> bool:
    """Celery wraps some Redis failures (e.g. the result store's retry limit) in other errors."""
    while exc is not None:
        if isinstance(exc, BROKER_UNAVAILABLE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def dispatch(model, object_id: int) -> bool:
    """Queue the work now, or mark it pending when the broker is unreachable. True if queued."""
    try:
        SENDERS[model](object_id)
    except Exception as exc:
        if not _caused_by_outage(exc):
            raise
        logger.warning("broker unavailable: %s %s stays pending", model.__name__, object_id, exc_info=True)
        model.objects.filter(pk=object_id).update(enqueue_pending=True)
        return False
    return True


def flush_pending() -> int:
    """Queue every pending run and training job this worker manages to claim; returns how many."""
    sent = 0
    for model in (Run, TrainingJob):
        for object_id in model.objects.filter(enqueue_pending=True, state=RunState.QUEUED).values_list("pk", flat=True):
            if model.objects.filter(pk=object_id, enqueue_pending=True).update(enqueue_pending=False) == 1:
                sent += dispatch(model, object_id)
    return sent


def start_flusher(interval_s: float | None = None) -> threading.Thread:
    """A daemon thread in each worker that keeps retrying pending work."""
    interval = interval_s or settings.OUTBOX_INTERVAL_S
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            try:
                flush_pending()
            except Exception:
                logger.warning("outbox flush failed", exc_info=True)

    thread = threading.Thread(target=loop, name="outbox-flusher", daemon=True)
    thread.start()
    return thread
