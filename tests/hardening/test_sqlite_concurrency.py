"""SQLite (the embedded default) with a worker writing: API writes wait for the lock, never 500."""

import sqlite3
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from experiments.models import Run
from experiments.runs import services as run_services
from tests.factories import make_dataset

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")


def test_sqlite_runs_in_wal_mode_with_immediate_transactions(transactional_db):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert connection.settings_dict["OPTIONS"]["timeout"] >= 20


def test_an_api_write_waits_for_a_worker_holding_the_write_lock(transactional_db, user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.dispatch", lambda model, object_id: True)
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    locked, released = threading.Event(), threading.Event()

    def worker_writing():  # another process's connection, as a Celery worker's would be
        db = sqlite3.connect(connection.settings_dict["NAME"], timeout=30, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE experiments_experiment SET name = name WHERE id = ?", (experiment.pk,))
        locked.set()
        time.sleep(1.5)
        db.execute("COMMIT")
        db.close()
        released.set()

    thread = threading.Thread(target=worker_writing)
    thread.start()
    assert locked.wait(10)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    # Starting a run reads (pairs to score) then writes (the run) in one transaction.
    response = client.post(f"/api/v1/experiments/{experiment.pk}/runs/")
    thread.join(30)
    assert released.is_set()
    assert response.status_code in (201, 202), response.content[:500]
    assert Run.objects.filter(experiment=experiment).count() == 1
