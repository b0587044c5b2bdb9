"""The database refusing writes in the middle of a run: the run fails with the reason and
nothing is half-written (no result rows of the refused detector, no orphan pictures).

A trigger in the real database (SQLite or PostgreSQL) refuses inserts into the results table,
the way a full disk, a revoked grant or a read-only replica would.
"""

import pytest
from django.db import connection

from experiments import storage
from experiments.models import Result, RunState
from experiments.runs import engine, tasks
from experiments.runs import services as run_services
from tests.factories import make_dataset

SQLITE_TRIGGER = (
    "CREATE TRIGGER refuse_results BEFORE INSERT ON experiments_result "
    "BEGIN SELECT RAISE(ABORT, 'disk full (refused by test trigger)'); END;"
)
POSTGRES_TRIGGER = [
    "CREATE FUNCTION refuse_results() RETURNS trigger AS $$ BEGIN "
    "RAISE EXCEPTION 'disk full (refused by test trigger)'; END; $$ LANGUAGE plpgsql;",
    "CREATE TRIGGER refuse_results BEFORE INSERT ON experiments_result FOR EACH ROW EXECUTE FUNCTION refuse_results();",
]


def refuse_result_inserts():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(SQLITE_TRIGGER)
        else:
            for statement in POSTGRES_TRIGGER:
                cursor.execute(statement)


def allow_result_inserts():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS refuse_results")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_results ON experiments_result")
            cursor.execute("DROP FUNCTION IF EXISTS refuse_results()")


@pytest.mark.django_db(transaction=True)
def test_a_refused_write_fails_the_run_with_the_reason_and_leaves_nothing(user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.dispatch", lambda model, object_id: True)
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)
    assert engine.prepare_run(run.pk)
    before = set(storage.list_all_keys())
    refuse_result_inserts()
    try:
        tasks.run_detector.apply(args=[run.pk, "absdiff"])  # the task body, as a worker runs it
    finally:
        allow_result_inserts()
    run.refresh_from_db()
    assert run.state == RunState.FAILED
    assert "refused by test trigger" in run.error
    assert not Result.objects.filter(run=run).exists()
    assert set(storage.list_all_keys()) == before
