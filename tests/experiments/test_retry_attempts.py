"""A retried run's tasks carry its attempt: tasks still queued for the earlier attempt (a cancelled
run's chord callback, say) find themselves stale and leave the retried run alone."""

import pytest

from experiments.models import RunState
from experiments.runs import engine
from experiments.runs import services as run_services
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db


def test_a_stale_finish_of_the_cancelled_attempt_does_not_end_the_retried_run(user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)
    first = run.progress["attempt"]
    assert engine.prepare_run(run.pk, first)
    run_services.run_cancel(run=run)
    engine.finish_run(run.pk, first)
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED

    run = run_services.run_retry(run=run)
    second = run.progress["attempt"]
    assert second != first
    assert engine.prepare_run(run.pk, second)
    engine.finish_run(run.pk, first)  # the old chord's callback, delivered late
    engine.run_detector(run.pk, "absdiff", first)  # and an old detector task
    run.refresh_from_db()
    assert run.state == RunState.RUNNING and not run.results.exists()

    engine.run_detector(run.pk, "absdiff", second)
    engine.finish_run(run.pk, second)
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED and run.results.count() == 3


def test_the_queued_canvas_carries_the_attempt(user, make_pair_bytes, monkeypatch):
    sent = []
    monkeypatch.setattr(
        "experiments.outbox.chain", lambda *tasks: type("C", (), {"apply_async": lambda s: sent.append(tasks)})()
    )
    from experiments import outbox

    dataset = make_dataset(user, pairs=[("p0", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("experiments.outbox.dispatch", lambda model, pk: True)
        run = run_services.run_start(experiment=experiment)
    outbox.send_run(run.pk)
    prepare, chord = sent[0]
    assert prepare.args == (run.pk, run.progress["attempt"])
    assert chord.tasks[0].args == (run.pk, "absdiff", run.progress["attempt"])
    assert chord.body.args == (run.pk, run.progress["attempt"])
