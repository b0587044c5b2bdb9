"""One cancel for queued work (`experiments.lifecycle.work_cancel`): runs and training jobs alike."""

import pytest

from experiments.errors import InvalidState
from experiments.lifecycle import run_transition, training_transition
from experiments.models import RunState, TrainingJob
from experiments.runs import services as run_services
from experiments.training import services as training_services
from tests.factories import make_dataset


@pytest.fixture
def dataset(user, make_pair_bytes):
    return make_dataset(user, pairs=[("p0", *make_pair_bytes())])


def queued_run(user, dataset):
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="n", detectors=["absdiff"])
    return run_services.run_start(experiment=experiment)


def queued_job(user, dataset):
    return TrainingJob.objects.create(owner=user, detector="siamese-unet", dataset=dataset, config={}, progress={})


KINDS = {
    "run": (queued_run, run_transition, lambda work: run_services.run_cancel(run=work)),
    "training job": (queued_job, training_transition, lambda work: training_services.training_cancel(job=work)),
}


@pytest.mark.parametrize("kind", KINDS)
def test_queued_work_is_cancelled_at_once(user, dataset, no_queue, kind):
    make, _, cancel = KINDS[kind]
    work = cancel(make(user, dataset))
    work.refresh_from_db()
    assert (work.state, work.cancel_requested) == (RunState.CANCELLED, True)
    assert work.finished_at is not None


@pytest.mark.parametrize("kind", KINDS)
def test_running_work_is_asked_to_stop_and_keeps_running_until_its_worker_checks(user, dataset, no_queue, kind):
    make, transition, cancel = KINDS[kind]
    work = make(user, dataset)
    transition(work.pk, RunState.RUNNING)
    work.refresh_from_db()
    work = cancel(work)
    assert (work.state, work.cancel_requested) == (RunState.RUNNING, True)


@pytest.mark.parametrize("kind", KINDS)
def test_finished_work_cannot_be_cancelled_and_says_so(user, dataset, no_queue, kind):
    make, transition, cancel = KINDS[kind]
    work = make(user, dataset)
    transition(work.pk, RunState.RUNNING)
    transition(work.pk, RunState.SUCCEEDED)
    work.refresh_from_db()
    with pytest.raises(InvalidState, match=f"The {kind} already succeeded"):
        cancel(work)
    work.refresh_from_db()
    assert (work.state, work.cancel_requested) == (RunState.SUCCEEDED, False)
