"""A training job whose worker died is failed visibly instead of staying `running` forever."""

import time

import pytest
from django.utils import timezone

from experiments.models import RunState, TrainingJob
from experiments.training import engine, tasks
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def job(user, state=RunState.RUNNING, heartbeat_age_s=None, started_age_s=0):
    dataset = make_dataset(user, name=f"ds-{TrainingJob.objects.count()}")
    progress = (
        {"stage": "epoch"}
        if heartbeat_age_s is None
        else {"stage": "epoch", "heartbeat_at": time.time() - heartbeat_age_s}
    )
    return TrainingJob.objects.create(owner=user, detector="siamese-unet", dataset=dataset, state=state, progress=progress,
                                      started_at=timezone.now() - timezone.timedelta(seconds=started_age_s))  # fmt: skip


def test_a_running_job_without_a_recent_heartbeat_is_failed_with_the_reason(user):
    stale = job(user, heartbeat_age_s=1000)
    fresh = job(user, heartbeat_age_s=5)
    queued = job(user, state=RunState.QUEUED, started_age_s=5000)
    assert engine.fail_stale_training(stale_after_s=300) == [stale.pk]
    stale.refresh_from_db()
    assert stale.state == RunState.FAILED
    assert stale.error.startswith("the worker training this job stopped (no heartbeat for 10")
    assert stale.error.endswith("s); start it again")
    assert TrainingJob.objects.get(pk=fresh.pk).state == RunState.RUNNING
    assert TrainingJob.objects.get(pk=queued.pk).state == RunState.QUEUED


def test_a_job_that_never_beat_is_judged_by_its_start(user, settings):
    settings.TRAINING_HEARTBEAT_TIMEOUT_S = 60
    old = job(user, started_age_s=600)
    new = job(user, started_age_s=5)
    assert tasks.check_stale_training() == [old.pk]  # what each worker runs at start and periodically
    assert TrainingJob.objects.get(pk=new.pk).state == RunState.RUNNING


def test_a_live_worker_keeps_its_job_beating(user):
    running = job(user, heartbeat_age_s=1000)
    reporter = engine.TrainingReporter(running.pk)
    reporter({"stage": "loading"})
    stop = engine._start_heartbeat(reporter, every_s=0.05)
    try:
        time.sleep(0.5)
    finally:
        stop()
    running.refresh_from_db()
    assert time.time() - running.progress["heartbeat_at"] < 5
    assert running.progress["stage"] == "loading"
    assert engine.fail_stale_training(stale_after_s=300) == []
