"""Queueing work that survives a broker outage.

Runs, training jobs, model validations and webhook deliveries are queued after their transaction
commits. If Redis (the broker) is down then, the row keeps its waiting state with `enqueue_pending`
set instead of failing the request; every worker retries pending rows periodically (and at
start-up), so work queued during an outage proceeds when Redis returns. Claiming a row clears its flag atomically, so two workers never
queue the same work twice.

Webhook retries wait here too: a failed delivery's row is left pending with `next_attempt_at`, and
the flush queues it once that has passed (see `experiments.notifications.webhooks`).

Tasks are sent by name (`TASK_*`), so queueing needs neither the task modules nor torch.
"""

import logging
import threading

from celery import chain, chord, current_app
from celery.signals import worker_ready
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from experiments.models import Run, RunState, TrainingJob, UploadedModel, WebhookDelivery
from experiments.plans.kinds import plan

logger = logging.getLogger(__name__)
BROKER_UNAVAILABLE = (BrokerError, RedisError, OSError)

TASK_PREPARE_RUN = "experiments.runs.prepare"
TASK_RUN_DETECTOR = "experiments.runs.detector"
TASK_FINISH_RUN = "experiments.runs.finish"
TASK_TRAIN = "experiments.training.train"
TASK_DELIVER_WEBHOOK = "experiments.notifications.deliver"
TASK_VALIDATE_MODEL = "experiments.onnx_models.validate"


def _task(name: str, *args, queue: str):
    return current_app.signature(name, args=args, immutable=True, queue=queue)


def detector_queue(experiment, name: str) -> str:
    """Where a detector of `experiment` runs: its plan's queue (learned: `gpu`, else `cpu`; an ensemble
    on `gpu` when any of its members is learned)."""
    return plan(experiment.owner, name, experiment=experiment).queue


def send_run(run_id: int) -> None:
    """A run's canvas: prepare (cpu) -> one task per detector on its queue, in a chord -> finish (cpu)."""
    run = Run.objects.select_related("experiment__owner").get(pk=run_id)
    experiment = run.experiment
    attempt = (run.progress or {}).get("attempt")  # a retry's tasks are told apart from the earlier attempt's
    detector_tasks = [
        _task(TASK_RUN_DETECTOR, run_id, name, attempt, queue=detector_queue(experiment, name))
        for name in experiment.detectors
    ]
    finish = _task(TASK_FINISH_RUN, run_id, attempt, queue="cpu")
    chain(_task(TASK_PREPARE_RUN, run_id, attempt, queue="cpu"), chord(detector_tasks, finish)).apply_async()


def send_training(job_id: int) -> None:
    _task(TASK_TRAIN, job_id, queue="gpu").apply_async()


def send_model_validation(model_id: int) -> None:
    """Validate an uploaded ONNX model on a `cpu` worker (its probe runs on the CPU); kept pending
    while the broker is down."""
    dispatch(UploadedModel, model_id)


def send_webhook(delivery_id: int) -> None:
    """One delivery attempt on the `webhooks` queue now; kept pending while the broker is down. A retry
    is not sent from here: its row waits until `next_attempt_at` and `flush_pending` sends it."""
    dispatch(WebhookDelivery, delivery_id)


def _send(model, object_id: int) -> None:
    if model is Run:
        send_run(object_id)
    elif model is TrainingJob:
        send_training(object_id)
    elif model is UploadedModel:
        _task(TASK_VALIDATE_MODEL, object_id, queue="cpu").apply_async()
    else:
        _task(TASK_DELIVER_WEBHOOK, object_id, queue="webhooks").apply_async()


def _caused_by_outage(exc: BaseException) -> bool:
    """Celery wraps some Redis failures (e.g. the result store's retry limit) in other errors."""
    while exc is not None:
        if isinstance(exc, BROKER_UNAVAILABLE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# What is queued through the outbox, and the state its row waits in until a worker takes it.
PENDING_STATES = (
    (Run, RunState.QUEUED),
    (TrainingJob, RunState.QUEUED),
    (UploadedModel, UploadedModel.State.VALIDATING),
    (WebhookDelivery, WebhookDelivery.State.PENDING),
)


def dispatch(model, object_id: int) -> bool:
    """Queue the work now, or mark it pending when the broker is unreachable. True if queued."""
    try:
        _send(model, object_id)
    except Exception as exc:
        if not _caused_by_outage(exc):
            raise
        logger.warning("broker unavailable: %s %s stays pending", model.__name__, object_id, exc_info=True)
        model.objects.filter(pk=object_id).update(enqueue_pending=True)
        return False
    return True


def flush_pending() -> int:
    """Queue every pending run, training job, model validation and due webhook delivery (a retry
    whose back-off has passed) this worker manages to claim; returns how many."""
    sent = 0
    for model, state in PENDING_STATES:
        for object_id in _waiting(model, state).values_list("pk", flat=True):
            if _waiting(model, state).filter(pk=object_id).update(enqueue_pending=False) == 1:
                sent += dispatch(model, object_id)
    return sent


def _waiting(model, state):
    waiting = model.objects.filter(enqueue_pending=True, state=state)
    if model is WebhookDelivery:
        waiting = waiting.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()))
    return waiting


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


@worker_ready.connect
def flush_outbox_while_running(**kwargs) -> None:
    """Each worker queues work left pending by a broker outage, now and every few seconds."""
    try:
        flush_pending()
    except Exception:
        logger.warning("outbox flush at start-up failed", exc_info=True)
    start_flusher()
