"""Tasks that survive a dead worker, and poison work that ends.

Tasks are acknowledged late and rejected when their worker is lost, so a task whose worker dies
comes back. Two holes are closed here, for every task wrapped in `leased` (runs, validations,
webhook deliveries, training), with one `TaskLease` row per task id (a redelivered or restored message
keeps its id):

- **A dead worker is seen in seconds, not hours.** While a delivery runs, its worker beats the
  lease every `TASK_HEARTBEAT_S`. Every worker looks for running leases silent for
  `TASK_HEARTBEAT_TIMEOUT_S` (`hand_out_stale`) and puts their message back at the head of its
  queue, taken out of the broker's unacknowledged set: it is not handed out a second time when
  the visibility timeout (hours) ends. A pool child killed under a live worker is requeued by the
  worker at once (`reject_on_worker_lost`).
- **Poison ends.** A delivery that finds the previous one still marked running (its worker died
  without ending it), or a stale lease, counts a death. When the deaths reach
  `TASK_MAX_WORKER_DEATHS`, the next delivery does not run the work: it ends it failed with
  `poison_reason` (`poisoned(..., reason=...)`, per task) and returns normally, so a chord
  still counts it.

A delivery that finds its task already ended (the stale check misjudged a live worker, or a
late duplicate) does nothing and raises `Ignore`: a chord never counts one task twice.
"""

import functools
import logging
import uuid
from datetime import timedelta

from celery.exceptions import Ignore
from celery.signals import worker_ready
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from experiments import heartbeats
from experiments.models import TaskLease

logger = logging.getLogger(__name__)

RUN, DONE, POISONED = "run", "done", "poisoned"
KEEP_ENDED = timedelta(days=1)  # ended leases catch late duplicates this long, then are deleted


def poison_reason(deaths: int) -> str:
    return (
        f"the worker died {deaths} times while running this: it probably needs more memory than a worker has "
        "(or crashes it); it was not tried again"
    )


def leased(poisoned, describe=None):
    """Decorate a bound task's function (under `@shared_task(bind=True, ...)`): its deliveries hold a
    lease. `poisoned(*args, reason=...)` ends the work failed after too many deaths; `describe(*args)`
    names the work for people reading the lease table. Called in process (eager, no id), it just runs."""

    def decorate(function):
        @functools.wraps(function)
        def run(task, *args, **kwargs):
            task_id = getattr(task.request, "id", None)
            if not task_id or task.request.is_eager:
                return function(task, *args, **kwargs)
            work = describe(*args, **kwargs) if describe else repr(args)[:200]
            verdict, lease = begin(task_id, task.name, work)
            if verdict == DONE:
                logger.info("%s %s already ended; this delivery does nothing", task.name, task_id)
                raise Ignore()
            if verdict == POISONED:
                logger.error("%s %s (%s): poison, %d worker deaths", task.name, task_id, work, lease.deaths)
                try:
                    poisoned(*args, **kwargs, reason=poison_reason(lease.deaths))
                except Exception:  # the work is gone (deleted) or cannot be failed: nothing more to do
                    logger.exception("could not end poisoned task %s (%s)", task_id, work)
                return None
            stop = heartbeats.start_beating(
                functools.partial(beat, task_id, lease.holder), settings.TASK_HEARTBEAT_S, f"lease-{task_id}"
            )
            try:
                result = function(task, *args, **kwargs)
            except BaseException:  # a retry (`autoretry_for` turns errors into one) comes back with this id
                release(task_id, lease.holder)
                raise
            finally:
                stop()
            if not end(task_id, lease.holder):
                logger.warning("%s %s was ended by another delivery; this one is not counted", task.name, task_id)
                raise Ignore()
            return result

        return run

    return decorate


def begin(task_id: str, task_name: str, work: str) -> tuple[str, TaskLease]:
    """A delivery of `task_id` starts: RUN (holding the lease), DONE (it already ended) or POISONED."""
    now = timezone.now()
    with transaction.atomic():
        lease, _ = TaskLease.objects.select_for_update().get_or_create(
            task_id=task_id, defaults={"task_name": task_name[:100], "work": work[:200]}
        )
        if lease.finished_at is not None:
            return DONE, lease
        if lease.running:  # the delivery before this one never ended: its worker died
            lease.deaths += 1
        lease.deliveries += 1
        if lease.deaths >= settings.TASK_MAX_WORKER_DEATHS:
            lease.running, lease.holder, lease.finished_at = False, "", now
            lease.save()
            return POISONED, lease
        lease.running, lease.holder, lease.heartbeat_at = True, uuid.uuid4().hex, now
        lease.save()
    return RUN, lease


def beat(task_id: str, holder: str) -> None:
    TaskLease.objects.filter(task_id=task_id, holder=holder, running=True).update(heartbeat_at=timezone.now())


def end(task_id: str, holder: str) -> bool:
    """The delivery returned: the task is done. False: another delivery ended it first."""
    return bool(
        TaskLease.objects.filter(task_id=task_id, holder=holder, finished_at__isnull=True).update(
            running=False, holder="", finished_at=timezone.now()
        )
    )


def release(task_id: str, holder: str) -> None:
    """The delivery stops without ending the task (it raised: a retry may follow): no death, not ended."""
    try:
        TaskLease.objects.filter(task_id=task_id, holder=holder).update(running=False, holder="")
    except Exception:  # the database is what failed: the stale check will release it
        logger.warning("could not release the lease of task %s", task_id, exc_info=True)


# --------------------------------------------------------------------------- every worker's check
def hand_out_stale(stale_after_s: float | None = None) -> list[str]:
    """Hand out again the tasks whose worker stopped beating; returns their ids.

    Each stale lease counts a death and stops running (claimed by one checker, row by row); its
    message, still in the broker's unacknowledged set, goes back to the head of its queue."""
    limit = settings.TASK_HEARTBEAT_TIMEOUT_S if stale_after_s is None else stale_after_s
    cutoff = timezone.now() - timedelta(seconds=limit)
    stale = list(TaskLease.objects.filter(running=True, heartbeat_at__lt=cutoff).values_list("task_id", flat=True))
    TaskLease.objects.filter(finished_at__lt=timezone.now() - KEEP_ENDED).delete()
    if not stale:
        return []
    unacked = unacknowledged_messages()
    handed_out = []
    for task_id in stale:
        claimed = TaskLease.objects.filter(task_id=task_id, running=True, heartbeat_at__lt=cutoff).update(
            running=False, holder="", deaths=F("deaths") + 1
        )
        if not claimed:
            continue
        tag = unacked.get(task_id)
        if tag is None:
            logger.warning("task %s stopped beating and its message is not held by the broker", task_id)
            continue
        restore(tag)
        logger.warning("task %s: its worker stopped beating; handed out again", task_id)
        handed_out.append(task_id)
    return handed_out


def unacknowledged_messages() -> dict[str, str]:
    """`{task id: delivery tag}` of the messages the broker (Redis) holds for workers that took
    them and have not acknowledged them yet."""
    import json

    from celery import current_app

    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        client = channel.client  # prefixes the keys of the commands kombu itself uses (not HGETALL)
        tags = client.zrange(channel.unacked_index_key, 0, -1)
        held = {tag: client.hget(channel.unacked_key, tag) for tag in tags}
    found = {}
    for tag, payload in held.items():
        if payload is None:  # acknowledged meanwhile
            continue
        try:
            message = json.loads(payload)[0]
            task_id = message["headers"]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        found[task_id] = tag.decode() if isinstance(tag, bytes) else tag
    return found


def restore(tag: str) -> None:
    """Put one unacknowledged message back at the head of its queue (as a worker's own reject would)."""
    from celery import current_app

    with current_app.connection_for_write() as connection:
        connection.default_channel.qos.restore_by_tag(tag, leftmost=True)


def check_stale() -> list[str]:
    try:
        return hand_out_stale()
    except Exception:
        logger.warning("the check for tasks whose worker stopped failed", exc_info=True)
        return []


@worker_ready.connect
def hand_out_stale_while_running(**kwargs) -> None:
    """On start-up and every `TASK_STALE_CHECK_INTERVAL_S`, each worker hands out again the tasks
    whose worker died (no heartbeat for `TASK_HEARTBEAT_TIMEOUT_S`)."""
    check_stale()
    heartbeats.start_periodic(check_stale, settings.TASK_STALE_CHECK_INTERVAL_S, "stale-task-check")
