"""A training job whose worker died is failed visibly instead of staying `running` forever."""

import time

import pytest
from django.utils import timezone

from experiments import outbox
from experiments.models import RunState, TaskLease, TrainingJob
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


def test_the_default_stale_rule_sees_a_dead_training_worker_within_two_minutes(settings):
    """Last beat just before the kill, silence past the timeout, then at most one check interval."""
    worst_s = (
        settings.TASK_HEARTBEAT_S + settings.TRAINING_HEARTBEAT_TIMEOUT_S + settings.TRAINING_STALE_CHECK_INTERVAL_S
    )
    assert worst_s < 120
    assert settings.TRAINING_HEARTBEAT_TIMEOUT_S > 2 * settings.TASK_HEARTBEAT_S  # a live job is never failed


@pytest.mark.integration
def test_a_training_worker_killed_mid_job_is_seen_and_the_job_failed_visibly_once(user, service_env, tmp_path):
    """SIGKILL mid-epoch; a second worker's checks see the silence (lease and training heartbeat), the
    redelivered task finds the job taken and does nothing, and the job ends failed with the reason."""
    from diffplatform.celery import app
    from experiments.datasets.benchmark import synthetic_dataset_create
    from experiments.training import services as training_services
    from tests.live_services import WorkerPool, wait_until

    app.control.purge()
    env = {**service_env, "CELERY_VISIBILITY_TIMEOUT": "600", "TASK_HEARTBEAT_S": "0.5",
           "TASK_HEARTBEAT_TIMEOUT_S": "5", "TASK_STALE_CHECK_INTERVAL_S": "1"}  # fmt: skip
    workers = WorkerPool(env, tmp_path)
    try:
        first = workers.start()
        dataset = synthetic_dataset_create(owner=user, name="tiny", pairs=8, size=48, seed=2)
        training = training_services.training_start(
            owner=user, detector="siamese-unet", dataset=dataset, epochs=500, patience=500, size=48, batch_size=4
        )
        wait_until(lambda: TrainingJob.objects.get(pk=training.pk).progress.get("epoch", 0) >= 1, 180,
                   "training never reached an epoch", first)  # fmt: skip
        first.kill()
        killed_at = time.monotonic()
        second = workers.start()
        wait_until(lambda: TrainingJob.objects.get(pk=training.pk).state != RunState.RUNNING, 120,
                   "the dead worker's job was never failed", second)  # fmt: skip
        assert time.monotonic() - killed_at < 120
        training.refresh_from_db()
        assert training.state == RunState.FAILED and training.checkpoint is None
        assert training.error.startswith("the worker training this job stopped (no heartbeat for ")
        lease = TaskLease.objects.filter(task_name=outbox.TASK_TRAIN)
        wait_until(lambda: lease.filter(finished_at__isnull=False).exists(), 60, "the redelivery", second)
        assert (lease.get().deliveries, lease.get().deaths) == (2, 1)  # handed out again, did nothing
        assert second.process.poll() is None  # the worker lives on
        assert TrainingJob.objects.get(pk=training.pk).state == RunState.FAILED  # not trained again
    finally:
        workers.stop_all()
