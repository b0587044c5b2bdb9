"""The engine run in-process (no broker): results, idempotency, cache, cancel, leaderboard."""

import numpy as np
import pytest

from experiments import storage
from experiments.models import PairAlignment, Result, RunState
from experiments.runs import engine, result_cache
from experiments.runs import services as run_services
from inference.images import load_mask
from inference.metrics import Confusion, confusion, scores
from tests.factories import make_dataset

DETECTORS = ["absdiff", "ssim"]


@pytest.fixture
def run_factory(user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    pairs = [(f"p{i}", *make_pair_bytes(seed=i, box=(4 + i, 6, 20 + i, 30))) for i in range(4)]
    dataset = make_dataset(user, pairs=pairs)
    for index, pair in enumerate(dataset.pairs.order_by("name")):
        pair.category = "even" if index % 2 == 0 else "odd"
        pair.save()

    def make(detectors=DETECTORS, **settings):
        experiment = run_services.experiment_create(
            owner=user, dataset=dataset, name="e", detectors=detectors, **settings
        )
        return run_services.run_start(experiment=experiment)

    return make


def execute(run):
    assert engine.prepare_run(run.pk)
    for name in run.experiment.detectors:
        engine.run_detector(run.pk, name)
    engine.finish_run(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_a_run_stores_exactly_one_result_per_pair_and_detector(run_factory):
    run = execute(run_factory())
    assert run.state == RunState.SUCCEEDED
    assert Result.objects.filter(run=run).count() == 8
    assert run.environment["weights"] == {"absdiff": "none", "ssim": "none"}
    assert run.environment["dataset"]["manifest_sha256"]
    assert run.environment["versions"]["torch"]


@pytest.mark.django_db
def test_running_a_detector_again_duplicates_nothing(run_factory):
    run = execute(run_factory())
    before = {(r.pair_id, r.detector): r.pk for r in Result.objects.filter(run=run)}
    Result.objects.filter(run=run, detector="ssim").first().delete()
    engine.run_detector(run.pk, "absdiff")  # a redelivered task: everything is there, nothing to do
    assert Result.objects.filter(run=run, detector="absdiff").count() == 4
    run.state = RunState.RUNNING
    run.save()
    engine.run_detector(run.pk, "ssim")  # resumes: only the missing pair is computed
    after = {(r.pair_id, r.detector): r.pk for r in Result.objects.filter(run=run)}
    assert len(after) == 8
    assert sum(1 for key in before if before[key] == after.get(key)) == 7


@pytest.mark.django_db
def test_leaderboard_equals_a_recomputation_from_stored_masks_and_labels(run_factory):
    run = execute(run_factory(baseline_detector="absdiff"))  # named: the default is the best classical one
    board = {row["detector"]: row for row in run.leaderboard["detectors"]}
    for name in DETECTORS:
        pooled, ious = Confusion.zero(), []
        for result in Result.objects.filter(run=run, detector=name).select_related("pair"):
            mask, _ = load_mask(storage.read_bytes(result.mask_key))
            label, _ = load_mask(storage.read_bytes(result.pair.label))
            conf = confusion(mask, label)
            pooled = pooled + conf
            ious.append(scores(conf)["iou"])
        assert board[name]["pooled"]["iou"] == pytest.approx(scores(pooled)["iou"])
        assert board[name]["pooled"]["f1"] == pytest.approx(scores(pooled)["f1"])
        assert board[name]["per_pair_mean"]["iou"] == pytest.approx(np.mean(ious))
        low, high = board[name]["ci"]["iou"]
        assert low <= np.mean(ious) <= high
    assert set(run.leaderboard["categories"]) == {"even", "odd"}
    comparison = board["ssim"]["comparison"]
    assert comparison["wins"] + comparison["ties"] + comparison["losses"] == 4
    by_pair = {
        name: dict(Result.objects.filter(run=run, detector=name).order_by("pair_id").values_list("pair_id", "iou"))
        for name in ("ssim", "absdiff")
    }
    ssim, absdiff = (np.array([by_pair[n][k] for k in sorted(by_pair["absdiff"])]) for n in ("ssim", "absdiff"))
    if np.any(ssim != absdiff):
        from scipy import stats

        assert comparison["wilcoxon_p"] == pytest.approx(stats.wilcoxon(ssim, absdiff).pvalue, rel=1e-9)
    assert comparison["small_sample"] and comparison["n"] == 4


@pytest.mark.django_db
def test_identical_work_is_served_from_the_result_cache(run_factory):
    first = execute(run_factory())
    second = execute(run_factory())
    fresh = Result.objects.filter(run=first)
    cached = Result.objects.filter(run=second)
    assert not any(r.from_cache for r in fresh)
    assert all(r.from_cache for r in cached)
    assert {(r.pair_id, r.detector, r.iou, r.heatmap_key) for r in fresh} == {
        (r.pair_id, r.detector, r.iou, r.heatmap_key) for r in cached
    }


@pytest.mark.django_db
def test_other_settings_miss_the_cache(run_factory):
    execute(run_factory())
    other = execute(run_factory(threshold=0.3))
    assert not Result.objects.filter(run=other, from_cache=True).exists()


@pytest.mark.django_db
def test_a_cancel_request_stops_a_running_detector(run_factory):
    run = run_factory()
    assert engine.prepare_run(run.pk)
    type(run).objects.filter(pk=run.pk).update(cancel_requested=True)
    with pytest.raises(engine.RunCancelled):
        engine.run_detector(run.pk, "absdiff")
    engine.fail_run(run.pk, "cancelled")
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED


@pytest.mark.django_db
def test_alignment_runs_once_per_pair_and_is_reused(run_factory, monkeypatch):
    calls = []
    import inference.alignment

    real = inference.alignment.align_pair
    monkeypatch.setattr(inference.alignment, "align_pair", lambda a, b: calls.append(1) or real(a, b))
    run = execute(run_factory(align=True))
    assert run.state == RunState.SUCCEEDED
    assert len(calls) == 4
    assert PairAlignment.objects.filter(run=run).count() == 4


@pytest.mark.django_db
def test_result_cache_key_depends_on_every_input(run_factory):
    run = run_factory()
    pair = run.experiment.dataset.pairs.first()
    base = {
        "owner_id": 1,
        "pair": pair,
        "detector": "absdiff",
        "weights_ref": "none:None",
        "computation": {"t": 0.5},
    }
    key = result_cache.result_cache_key(**base)
    assert key == result_cache.result_cache_key(**base)
    for change in ({"owner_id": 2}, {"detector": "ssim"}, {"weights_ref": "x"}, {"computation": {"t": 0.4}}):
        assert result_cache.result_cache_key(**(base | change)) != key


@pytest.mark.django_db
def test_each_pair_gets_a_consensus_map_of_the_detectors(run_factory):
    import io as _io

    from PIL import Image

    from experiments.runs import result_pictures
    from experiments.runs.result_pictures import consensus_key
    from inference.render import heatmap_png
    from inference.statistics import consensus_map

    run = execute(run_factory())
    for pair in run.experiment.dataset.pairs.all():
        masks = [load_mask(storage.read_bytes(r.mask_key))[0] for r in Result.objects.filter(run=run, pair=pair)]
        assert not storage.exists(consensus_key(run.pk, pair.pk))  # drawn when first read, not by the run
        stored = result_pictures.read(consensus_key(run.pk, pair.pk))
        assert stored == heatmap_png(consensus_map(masks))
        assert Image.open(_io.BytesIO(stored)).size[1] == pair.b_height
