"""A dataset import holds no write transaction while it decodes pairs or writes files (issue 26,
item 8): on SQLite a worker's write goes through meanwhile; the rows go in by one short
transaction at the end, and any problem, even at that last step, leaves no row and no file."""

import sqlite3

import pytest
from django.db import connection

from experiments import storage
from experiments.datasets import ingest, services
from experiments.models import ImagePair
from tests.factories import make_dataset
from tests.hardening.bad_inputs import label_png, png
from tests.hardening.bad_inputs import zip_entries as zip_of

pytestmark = pytest.mark.django_db(transaction=True)


def pairs_zip(count: int, bad_label_at: int | None = None) -> bytes:
    entries = {}
    for i in range(count):
        entries[f"A/p{i}.png"], entries[f"B/p{i}.png"] = png(i), png(i + 100)
        entries[f"label/p{i}.png"] = b"not a label" if i == bad_label_at else label_png()
    return zip_of(entries)


def observed(monkeypatch, what):
    """Call `what(name)` at each pair's decoding and each file write."""
    check, save = services.pair_check, storage.save_bytes

    def pair_check(**kwargs):
        what("decode")
        return check(**kwargs)

    def save_bytes(key, data):
        what("file")
        return save(key, data)

    monkeypatch.setattr(services, "pair_check", pair_check)
    monkeypatch.setattr(storage, "save_bytes", save_bytes)


def test_decoding_and_file_writes_happen_outside_any_transaction(user, monkeypatch):
    dataset = make_dataset(user)
    seen = []
    observed(monkeypatch, lambda step: seen.append((step, connection.in_atomic_block)))
    body = ingest.archive_import(dataset=dataset, data=pairs_zip(3))
    assert body["imported"] == 3 and ImagePair.objects.filter(dataset=dataset).count() == 3
    assert {step for step, _ in seen} == {"decode", "file"}
    assert not any(inside for _, inside in seen), seen


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write lock")
def test_a_worker_writes_while_an_import_decodes(user, monkeypatch):
    dataset = make_dataset(user)
    writes = []

    def worker_write(step):  # another process's connection, waiting at most 0.2 s for the lock
        if step != "decode":
            return
        db = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.2, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE experiments_dataset SET description = description WHERE id = ?", (dataset.pk,))
            db.execute("COMMIT")
            writes.append(True)
        finally:
            db.close()

    observed(monkeypatch, worker_write)
    assert ingest.archive_import(dataset=dataset, data=pairs_zip(3))["imported"] == 3
    assert len(writes) == 3


def test_a_bad_pair_after_good_ones_leaves_no_row_and_no_file(user):
    dataset = make_dataset(user)
    with pytest.raises(ingest.ImportRejected, match="label"):
        ingest.archive_import(dataset=dataset, data=pairs_zip(4, bad_label_at=3))
    assert ImagePair.objects.count() == 0 and storage.list_all_keys() == []


def test_a_name_taken_while_the_import_ran_leaves_no_row_and_no_file(user, monkeypatch):
    dataset = make_dataset(user)

    def another_import_takes_a_name(step):
        if step == "decode" and not ImagePair.objects.exists():
            ImagePair.objects.create(dataset=dataset, name="p2", image_a="x", image_b="y", a_sha256="", b_sha256="",
                                     a_width=1, a_height=1, b_width=1, b_height=1, a_bytes=1, b_bytes=1)  # fmt: skip

    observed(monkeypatch, another_import_takes_a_name)
    with pytest.raises(ingest.ImportRejected, match="Another import added pairs"):
        ingest.archive_import(dataset=dataset, data=pairs_zip(3))
    assert list(ImagePair.objects.values_list("name", flat=True)) == ["p2"]  # only the other import's row
    assert storage.list_all_keys() == []


def test_a_batch_decodes_and_writes_its_pairs_outside_any_transaction(user, monkeypatch, no_queue):
    from experiments.batches import services as batches

    seen = []
    observed(monkeypatch, lambda step: seen.append((step, connection.in_atomic_block)))
    files = {f"{role}/p{i}.png": png(i + 100 * j) for i in range(2) for j, role in enumerate("AB")}
    job, created = batches.batch_create(owner=user, files=files, detectors=["absdiff"])
    assert created and job.run_id is not None and ImagePair.objects.count() == 2
    assert {step for step, _ in seen} == {"decode", "file"}
    assert not any(inside for _, inside in seen), seen
