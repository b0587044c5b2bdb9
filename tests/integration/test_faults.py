"""Worker crashes, cancel and retry against a real Celery worker, Redis and the database."""

import time

import pytest

from experiments.models import Result, Run, RunState
from experiments.runs import services as run_services
from tests.factories import make_dataset

pytestmark = pytest.mark.integration

SLOW = "siamese-resnet50"  # random weights, ~0.04 s a pair at 160 px: batches of 8 slow enough to interrupt
PAIRS = 40


@pytest.fixture
def slow_experiment(user, make_pair_bytes):
    pairs = [(f"p{i:02d}", *make_pair_bytes(seed=i)) for i in range(PAIRS)]
    dataset = make_dataset(user, pairs=pairs)
    return run_services.experiment_create(
        owner=user, dataset=dataset, name="slow", detectors=["absdiff", SLOW],
        detector_weights={SLOW: "random"}, input_size=160,
    )  # fmt: skip


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def slow_results(run) -> int:
    return Result.objects.filter(run=run, detector=SLOW).count()


def assert_complete_and_unique(run):
    results = list(Result.objects.filter(run=run).values_list("pair_id", "detector"))
    assert len(results) == len(set(results)) == 2 * PAIRS


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(slow_experiment, celery_workers):
    first = celery_workers.start()
    run = run_services.run_start(experiment=slow_experiment)
    wait_for(lambda: slow_results(run) >= 8, 120, "the slow detector never started")
    first.kill()
    partial = slow_results(run)
    assert 8 <= partial < PAIRS, "the kill must land mid-run"
    celery_workers.start()
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 180, "the run did not finish after the restart")
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    assert_complete_and_unique(run)
    assert run.progress_done == run.progress_total == 2 * PAIRS


def test_cancel_stops_a_running_run_and_retry_completes_it(slow_experiment, celery_worker):
    run = run_services.run_start(experiment=slow_experiment)
    wait_for(lambda: slow_results(run) >= 8, 120, "the slow detector never started")
    run_services.run_cancel(run=Run.objects.get(pk=run.pk))
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 60, "cancel was not honoured")
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert slow_results(run) < PAIRS
    run_services.run_retry(run=run)
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 180, "the retried run did not finish")
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    assert_complete_and_unique(run)
