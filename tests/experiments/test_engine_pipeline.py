"""The engine's batches: maps computed together, pictures and metrics made on a helper thread while the
next batch is predicted, rows written in bulk; every picture still there, nothing half-written."""

import io
import uuid

import numpy as np
import pytest
from PIL import Image

from experiments import storage
from experiments.models import Result, RunState
from experiments.runs import engine, result_pictures
from experiments.runs import services as run_services
from tests.conftest import png_bytes
from tests.factories import make_dataset, run_in_process


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    monkeypatch.setattr(engine, "BATCH_SIZE", 3)


def _pairs(count: int, size: int = 40):
    """Pairs never seen before (the result cache outlives a test): seeded by a fresh salt."""
    salt = uuid.uuid4().int % 10**9
    pairs = []
    for index in range(count):
        rng = np.random.default_rng([salt, index])
        a = rng.integers(60, 120, size=(size, size + 8, 3), dtype=np.uint8)
        b = a.copy()
        b[4 : 12 + index, 4:12] = (240, 30, 30)
        label = np.zeros(a.shape[:2], np.uint8)
        label[4 : 12 + index, 4:12] = 255
        pairs.append((f"p{index:02d}", png_bytes(a), png_bytes(b), png_bytes(label)))
    return pairs


def _start(user, count: int, detectors=("absdiff",)):
    dataset = make_dataset(user, pairs=_pairs(count))
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="p", detectors=list(detectors))
    return run_services.run_start(experiment=experiment)


def _png(key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result_pictures.read(key))))  # a heatmap or error map drawn when read


@pytest.mark.django_db
def test_every_result_has_its_pictures_at_b_size(user):
    run = run_in_process(_start(user, 7, ("absdiff", "ssim")))
    assert run.state == RunState.SUCCEEDED
    results = list(Result.objects.filter(run=run).select_related("pair"))
    assert len(results) == 14
    for result in results:
        height, width = result.pair.b_height, result.pair.b_width
        assert _png(result.mask_key).shape == (height, width)
        assert _png(result.error_map_key).shape == (height, width, 3)
        heatmap = _png(result.heatmap_key)
        assert heatmap.shape[0] == height and heatmap.shape[1] > width  # with its colour bar
        assert set(np.unique(_png(result.mask_key))) <= {0, 255}
    assert run.progress_done == 14


@pytest.mark.django_db
def test_a_failure_making_pictures_keeps_the_stored_batches_and_leaves_no_orphan_files(user, monkeypatch):
    run = _start(user, 8)
    assert engine.prepare_run(run.pk)
    real, calls = engine.build_result_entry, []

    def fails_on_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "build_result_entry", fails_on_the_fifth)
    with pytest.raises(RuntimeError, match="disk full"):
        engine.run_detector(run.pk, "absdiff")

    stored = list(Result.objects.filter(run=run))
    assert len(stored) == 3  # the first batch of 3; the second failed while being made
    referenced = {key for r in stored for key in (r.mask_key, r.heatmap_key.replace("heatmap.png", "levels.png"))}
    assert set(storage.list_all_keys("results")) == referenced  # the fourth pair's map and mask were removed


@pytest.mark.django_db
def test_a_cancel_stores_the_batch_already_predicted(user, monkeypatch):
    run = _start(user, 9)
    assert engine.prepare_run(run.pk)
    real, batches = engine.process_batch, []

    def cancel_after_the_second(run_, slot, pairs, *args, **kwargs):
        real(run_, slot, pairs, *args, **kwargs)
        batches.append(len(pairs))
        if len(batches) == 2:
            type(run_).objects.filter(pk=run_.pk).update(cancel_requested=True)

    monkeypatch.setattr(engine, "process_batch", cancel_after_the_second)
    with pytest.raises(engine.RunCancelled):
        engine.run_detector(run.pk, "absdiff")
    assert Result.objects.filter(run=run).count() == 6  # both predicted batches, the second stored on the way out


@pytest.mark.django_db
def test_a_rerun_links_every_cached_result_in_one_chunk_and_predicts_nothing(user, monkeypatch):
    first = run_in_process(_start(user, 7))
    assert first.state == RunState.SUCCEEDED
    again = run_services.run_start(experiment=first.experiment)
    batches, upserts = [], []
    real_batch, real_upsert = engine.process_batch, engine._upsert_results
    monkeypatch.setattr(engine, "process_batch", lambda *a, **k: (batches.append(a[2]), real_batch(*a, **k)))
    monkeypatch.setattr(engine, "_upsert_results", lambda run, name, rows: (upserts.append(len(rows)),
                                                                            real_upsert(run, name, rows)))  # fmt: skip
    again = run_in_process(again)
    assert again.state == RunState.SUCCEEDED
    assert batches == []  # 7 pairs, batches of 3: every one was a cache hit, none predicted
    assert upserts == [7]  # one upsert for the chunk of hits, not one per batch
    rows = list(Result.objects.filter(run=again))
    assert len(rows) == 7 and all(r.from_cache for r in rows)
    firsts = dict(Result.objects.filter(run=first).values_list("pair_id", "heatmap_key"))
    assert {r.pair_id: r.heatmap_key for r in rows} == firsts
