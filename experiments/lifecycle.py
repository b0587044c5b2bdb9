"""The state machine of queued work (runs and training jobs) and the live event each move sends.

It sits below the services (which start, cancel and retry work) and the engines (which run it),
so that both move state the same way without importing each other.
"""

from django.db import transaction
from django.utils import timezone

from experiments.errors import InvalidState
from experiments.live import progress
from experiments.models import FINISHED_RUN_STATES, Run, RunState, TrainingJob

ALLOWED_TRANSITIONS = {
    RunState.QUEUED: {RunState.RUNNING, RunState.CANCELLED, RunState.FAILED},
    RunState.RUNNING: {RunState.SUCCEEDED, RunState.PARTIAL, RunState.FAILED, RunState.CANCELLED},
    RunState.PARTIAL: {RunState.QUEUED},  # retry: the failed detectors run again, finished results are kept
    RunState.FAILED: {RunState.QUEUED},
    RunState.CANCELLED: {RunState.QUEUED},
    RunState.SUCCEEDED: set(),
}


def work_transition(model, object_id: int, new_state: str, **fields):
    """Move a run or training job to `new_state` if the state machine allows it (row locked)."""
    with transaction.atomic():
        work = model.objects.select_for_update().get(pk=object_id)
        if new_state not in ALLOWED_TRANSITIONS[work.state]:
            raise InvalidState(f"A {work.state} {model._meta.verbose_name} cannot become {new_state}.")
        work.state = new_state
        now = timezone.now()
        if new_state == RunState.RUNNING and work.started_at is None:
            work.started_at = now
        if new_state in FINISHED_RUN_STATES:
            work.finished_at = now
        for name, value in fields.items():
            setattr(work, name, value)
        work.save()
    return work


def run_transition(run_id: int, new_state: str, **fields) -> Run:
    run = work_transition(Run, run_id, new_state, **fields)
    progress.publish_run_state(run)
    if run.is_finished:
        from experiments.notifications import webhooks

        progress.publish_finished("run", run)
        webhooks.queue_run_finished(run)
    return run


def training_transition(job_id: int, new_state: str, **fields) -> TrainingJob:
    job = work_transition(TrainingJob, job_id, new_state, **fields)
    progress.publish_training_state(job)
    if job.is_finished:
        progress.publish_finished("training", job)
    return job


def work_cancel(work: Run | TrainingJob) -> Run | TrainingJob:
    """Ask a run or training job to stop. Cooperative: its worker checks between batches; queued work
    is cancelled at once (its task, when it comes, finds the work finished and does nothing)."""
    noun = work._meta.verbose_name
    if work.is_finished:
        raise InvalidState(f"The {noun} already {work.state}; only queued or running work can be cancelled.")
    type(work).objects.filter(pk=work.pk).update(cancel_requested=True)
    if work.state == RunState.QUEUED:
        transition = run_transition if isinstance(work, Run) else training_transition
        return transition(work.pk, RunState.CANCELLED, cancel_requested=True)
    work.refresh_from_db()
    return work
