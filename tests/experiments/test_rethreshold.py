"""The live threshold: a run's leaderboard recomputed from the stored per-pair score histograms equals
the stored one at the run's own threshold, and equals scikit-learn on the stored probability maps at
other thresholds."""

import io
import math
import zipfile

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from experiments import storage
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.models import PairPrediction, RunState
from experiments.predictions import services as prediction_services
from experiments.reporting import leaderboard, rethreshold
from experiments.runs import services as run_services
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db

SIZE = 48
RUN_THRESHOLD = 0.25  # on the grid: the histogram recomputation can be compared with the stored run exactly
PER_PAIR_KEPT = ("iou", "f1", "precision", "recall", "oa", "kappa", "miou", "mf1", "auroc", "ap", "fp_area")


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


@pytest.fixture
def scored_run(user, make_pair_bytes, no_queue):
    """Five pairs in two categories (one without change), uploaded float32 maps and `absdiff`."""
    from inference.images import load_mask

    dataset = make_dataset(user)
    files = {}
    boxes = [(4, 6, 20, 30), (10, 10, 30, 40), (2, 2, 12, 12), (20, 5, 40, 25), (0, 0, 0, 0)]
    for index, box in enumerate(boxes):
        a, b, label = make_pair_bytes(size=SIZE, seed=index, box=box)
        pair = dataset_services.pair_create(dataset=dataset, name=f"p{index}", a_bytes=a, b_bytes=b,
                                            label_bytes=label, category="roads" if index % 2 else "fields")  # fmt: skip
        truth = load_mask(storage.read_bytes(pair.label))[0].astype(np.float32)
        rng = np.random.default_rng(index)
        prob = np.clip(0.55 * truth + rng.normal(0.25, 0.22, truth.shape), 0, 1).astype(np.float32)
        prob[0, :8] = [0, 0.25, 0.5, 0.75, 1, 1000 / 4096, 3 / 256, 1 / 4096]  # values exactly on threshold edges
        files[f"p{index}.npy"] = _npy(prob)
    prediction_services.prediction_set_upload(owner=user, dataset=dataset, name="mine", kind="probability",
                                              archive=_zip(files))  # fmt: skip
    run = run_services.experiment_start(owner=user, dataset=dataset, name="e", detectors=["external:mine", "absdiff"],
                                        threshold=RUN_THRESHOLD, splits=[])  # fmt: skip
    run = run_in_process(run)
    assert run.state == RunState.SUCCEEDED, run.error
    return run


def stored_maps(run):
    """The uploaded probability maps as stored, and the labels, in pair order."""
    from inference.images import load_mask

    probs, labels = [], []
    for prediction in (
        PairPrediction.objects.filter(prediction_set__name="mine").select_related("pair").order_by("pair__name")
    ):
        assert prediction.file_key.endswith(".npy")
        probs.append(np.load(io.BytesIO(storage.read_bytes(prediction.file_key)), allow_pickle=False).ravel())
        labels.append(load_mask(storage.read_bytes(prediction.pair.label))[0].ravel())
    return np.concatenate(probs), np.concatenate(labels)


def row(leaderboard_dict, name):
    return next(r for r in leaderboard_dict["detectors"] if r["detector"] == name)


def _same(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if not isinstance(a, (int, float)) or isinstance(a, bool):
        return a == b
    return a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_at_the_runs_threshold_the_recomputation_equals_the_stored_leaderboard(scored_run):
    stored = scored_run.leaderboard
    recomputed = rethreshold.recompute_leaderboard(scored_run, RUN_THRESHOLD)
    for name in ("external:mine", "absdiff"):
        old, new = row(stored, name), row(recomputed, name)
        for key, value in old["pooled"].items():
            assert _same(new["pooled"][key], value), (name, key)
        for key in PER_PAIR_KEPT:
            assert _same(new["per_pair_mean"][key], old["per_pair_mean"][key]), (name, key)
        assert set(new["ci"]) == set(old["ci"])
        for key in old["ci"]:
            assert _same(new["ci"][key], old["ci"][key]), (name, key)
        assert new["no_change"] == old["no_change"]
        assert _same(new["comparison"], old["comparison"])
    assert set(recomputed["categories"]) == set(stored["categories"]) == {"fields", "roads"}
    for category, per_detector in stored["categories"].items():
        for name, summary in per_detector.items():
            assert _same(recomputed["categories"][category][name]["pooled"]["iou"], summary["pooled"]["iou"])
            assert _same(
                recomputed["categories"][category][name]["per_pair_mean"]["iou"], summary["per_pair_mean"]["iou"]
            )


def test_the_api_entry_point_returns_the_stored_run_at_its_own_threshold(scored_run):
    view, record = rethreshold.run_at_threshold(scored_run, str(RUN_THRESHOLD))
    assert view is scored_run and record["at_run_threshold"] and record["source"] == "stored leaderboard"


def test_pooled_scores_at_other_thresholds_equal_sklearn_on_the_stored_maps(scored_run):
    prob, truth = stored_maps(scored_run)
    for threshold in (0.125, 0.5, 0.75, 1000 / 4096, 3 / 256):
        view, record = rethreshold.run_at_threshold(scored_run, threshold)
        assert record["threshold"] == threshold and not record["rounded_to_grid"] and not record["at_run_threshold"]
        predicted = prob >= threshold
        pooled = row(view.leaderboard, "external:mine")["pooled"]
        expected_f1 = f1_score(truth, predicted)
        assert 0.05 < expected_f1 < 0.99  # neither trivial nor perfect: the comparison can fail
        assert pooled["f1"] == pytest.approx(expected_f1, rel=1e-12), threshold
        assert pooled["iou"] == pytest.approx(jaccard_score(truth, predicted), rel=1e-12)
        assert pooled["precision"] == pytest.approx(precision_score(truth, predicted), rel=1e-12)
        assert pooled["recall"] == pytest.approx(recall_score(truth, predicted), rel=1e-12)
        assert pooled["f1"] != pytest.approx(row(scored_run.leaderboard, "external:mine")["pooled"]["f1"])
        # the flat rows every export reads carry the recomputed value
        records = {r["detector"]: r for r in leaderboard.leaderboard_records(view)}
        assert records["external:mine"]["pooled_f1"] == pooled["f1"]
        assert view.leaderboard["threshold"]["threshold"] == threshold


def test_false_alarms_are_recomputed_on_the_pair_without_change(scored_run):
    prob, _ = stored_maps(scored_run)
    no_change = prob[-SIZE * SIZE :]  # p4 has no change
    for threshold in (0.125, 0.875):
        view, _ = rethreshold.run_at_threshold(scored_run, threshold)
        summary = row(view.leaderboard, "external:mine")["no_change"]
        area = float((no_change >= threshold).mean())
        assert summary["n_pairs"] == 1
        assert summary["fp_area"] == pytest.approx(area)
        assert summary["false_alarms"] == int(area > summary["min_false_alarm_area"])


def test_a_threshold_off_the_grid_is_rounded_and_says_so(scored_run):
    _, record = rethreshold.run_at_threshold(scored_run, "0.3")
    assert record["rounded_to_grid"] and record["requested"] == 0.3
    assert record["threshold"] == round(0.3 * 4096) / 4096
    assert "mean_object_f1" in record["not_recomputed"]
    assert set(record["oracle_thresholds"]) == {"external:mine", "absdiff"}


def test_thresholds_outside_zero_one_are_refused(scored_run):
    for value in ("0", "1", "-0.2", "1.5", "abc", "nan"):
        with pytest.raises(ServiceError):
            rethreshold.run_at_threshold(scored_run, value)
