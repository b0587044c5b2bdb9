"""Threshold rules: under `validation` each detector's threshold is F1-optimal on the validation pairs
(scikit-learn's precision_recall_curve over the maps), frozen and applied to the scored split (its pooled
F1 equals scikit-learn on the stored masks); the ranking can differ from the one at 0.5, and the page,
the protocol card and the compare page say which rule gave which."""

import io
import zipfile

import numpy as np
import pytest
from django.core.management import call_command
from sklearn.metrics import f1_score, precision_recall_curve

from experiments import storage
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.models import RunState
from experiments.predictions import services as prediction_services
from experiments.reporting import comparison, leaderboard
from experiments.runs import result_pictures
from experiments.runs import services as run_services
from experiments.runs.pair_inputs import load_pair_inputs
from experiments.runs.protocol import protocol_of
from experiments.runs.selectors import scored_pairs, validation_pairs
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db

SIZE = 40
BOXES = [(4, 6, 20, 30), (10, 10, 30, 36), (2, 2, 14, 12), (20, 5, 38, 25), (6, 20, 18, 38), (0, 0, 0, 0)]
# "sharp" separates change well but never reaches 0.5; "calibrated" is right at 0.5 but noisier.
DETECTORS = ["external:sharp", "external:calibrated", "absdiff"]


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


def _maps(truth: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Seeded maps on the 1/256 grid (so the histograms hold every score exactly)."""
    rng = np.random.default_rng(seed)
    sharp = 0.3 * truth + rng.normal(0.12, 0.06, truth.shape)
    calibrated = 0.45 * truth + rng.normal(0.3, 0.14, truth.shape)
    return {name: (np.clip(np.round(m * 256), 0, 256) / 256).astype(np.float32) for name, m in
            (("sharp", sharp), ("calibrated", calibrated))}  # fmt: skip


@pytest.fixture
def split_dataset(user, make_pair_bytes):
    """Six val and six test pairs (one of each without change) and two uploaded prediction sets."""
    from inference.images import load_mask

    dataset = make_dataset(user, name="splits")
    files = {"sharp": {}, "calibrated": {}}
    for split, offset in (("val", 0), ("test", 100)):
        for index, box in enumerate(BOXES):
            a, b, label = make_pair_bytes(size=SIZE, seed=offset + index, box=box)
            name = f"{split}{index}"
            pair = dataset_services.pair_create(dataset=dataset, name=name, a_bytes=a, b_bytes=b, label_bytes=label,
                                                split=split)  # fmt: skip
            truth = load_mask(storage.read_bytes(pair.label))[0].astype(np.float32)
            for kind, prob in _maps(truth, offset + index).items():
                files[kind][f"{name}.npy"] = _npy(prob)
    for kind, archive in files.items():
        prediction_services.prediction_set_upload(owner=user, dataset=dataset, name=kind, kind="probability",
                                                  archive=_zip(archive))  # fmt: skip
    return dataset


def _run(user, dataset, detectors=DETECTORS, **settings):
    run = run_services.experiment_start(owner=user, dataset=dataset, name="e", detectors=detectors,
                                        splits=["test"], **settings)  # fmt: skip
    run = run_in_process(run)
    assert run.state == RunState.SUCCEEDED, run.error
    return run


@pytest.fixture
def validation_run(user, split_dataset, no_queue):
    return _run(user, split_dataset, threshold_rule="validation")


@pytest.fixture
def fixed_run(user, split_dataset, no_queue):
    return _run(user, split_dataset)


def _maps_of(run, name, pairs):
    """The detector's probability maps of `pairs` (what the engine saw) and their labels, flattened."""
    from inference.registry import create_detector

    detector = create_detector("absdiff") if name == "absdiff" else None
    probs, labels = [], []
    for pair in pairs:
        item = load_pair_inputs(pair, None)
        if detector is not None:
            prob = detector.predict(item.a, item.b)
        else:
            prediction = pair.predictions.get(prediction_set__name=name.split(":", 1)[1])
            prob = np.load(io.BytesIO(storage.read_bytes(prediction.file_key)), allow_pickle=False)
        probs.append(np.asarray(prob, np.float64).ravel())
        labels.append(item.label.ravel())
    return np.concatenate(probs), np.concatenate(labels)


def _row(run, name):
    return next(r for r in run.leaderboard["detectors"] if r["detector"] == name)


def test_each_threshold_is_f1_optimal_on_the_validation_pairs(validation_run):
    pairs = validation_pairs(validation_run.experiment)
    assert [p.split for p in pairs] == ["val"] * len(BOXES)
    for name in DETECTORS:
        record = validation_run.environment["detector_info"][name]
        assert record["threshold_source"] == f"validation ({len(BOXES)} pairs)"
        scores, labels = _maps_of(validation_run, name, pairs)
        precision, recall, thresholds = precision_recall_curve(labels, scores)
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                       where=precision + recall > 0)[:-1]  # fmt: skip
        best = int(np.argmax(f1))
        ours = f1_score(labels, scores >= record["threshold"])
        assert ours == pytest.approx(record["validation_f1"], abs=1e-12), name
        assert ours <= f1[best] + 1e-12, name  # scikit-learn's is the best over every score
        if name.startswith("external:"):  # scores on the grid: the same threshold, exactly
            assert record["threshold"] == pytest.approx(float(thresholds[best]), abs=1e-12), name
            assert ours == pytest.approx(f1[best], abs=1e-12), name
        else:  # absdiff's scores lie between grid points: as good up to the grid
            assert ours >= f1[best] - 2e-3, name
        assert _row(validation_run, name)["threshold"] == record["threshold"]


def test_the_scored_split_is_thresholded_at_the_frozen_threshold(validation_run):
    pairs = list(scored_pairs(validation_run.experiment))
    assert {p.split for p in pairs} == {"test"}
    for name in DETECTORS:
        threshold = _row(validation_run, name)["threshold"]
        masks, labels = [], []
        for result in validation_run.results.filter(detector=name).select_related("pair").order_by("pair_id"):
            masks.append(result_pictures.read_mask(result.mask_key).ravel())
            labels.append(load_pair_inputs(result.pair, None).label.ravel())
        masks, labels = np.concatenate(masks), np.concatenate(labels)
        assert len(masks) == len(pairs) * SIZE * SIZE
        assert _row(validation_run, name)["pooled"]["f1"] == pytest.approx(f1_score(labels, masks), abs=1e-12)
        scores, _ = _maps_of(validation_run, name, pairs)
        assert np.array_equal(masks, scores >= threshold), name


def test_the_ranking_differs_between_the_rules_and_the_page_says_which(client, user, validation_run, fixed_run):
    at_half = [r["detector"] for r in leaderboard.leaderboard_records(fixed_run)]
    on_validation = [r["detector"] for r in leaderboard.leaderboard_records(validation_run)]
    assert at_half.index("external:calibrated") < at_half.index("external:sharp")
    assert on_validation.index("external:sharp") < on_validation.index("external:calibrated")
    assert {r["threshold_source"] for r in leaderboard.leaderboard_records(fixed_run)} == {"fixed"}
    client.force_login(user)
    fixed_page = client.get(f"/runs/{fixed_run.pk}/").content.decode()
    validation_page = client.get(f"/runs/{validation_run.pk}/").content.decode()
    assert 'id="protocol-card"' in fixed_page and "fixed: 0.5 for every detector" in fixed_page
    assert "validation: each detector's F1-optimal threshold on the val split" in validation_page
    assert f"validation ({len(BOXES)} pairs)" in validation_page and "Threshold (source)" in validation_page
    sharp = _row(validation_run, "external:sharp")["threshold"]
    assert f'data-threshold="{sharp}"' in validation_page
    assert "Run's thresholds (per detector, chosen on validation)" in validation_page
    # the slider at 0.5 recomputes every detector there (the validation thresholds are not 0.5)
    moved = client.get(f"/runs/{validation_run.pk}/threshold.json?threshold=0.5").json()
    assert moved["threshold"]["at_run_threshold"] is False
    assert {(r["threshold"], r["threshold_source"]) for r in moved["rows"]} == {
        (0.5, "chosen on the page (recomputed)")
    }
    at_half_f1 = {r["detector"]: r["pooled_f1"] for r in leaderboard.leaderboard_records(fixed_run)}
    assert {r["detector"]: r["pooled_f1"] for r in moved["rows"]} == pytest.approx(at_half_f1, abs=1e-12)


def test_the_default_baseline_is_the_best_classical_detector_under_the_rule(validation_run, fixed_run):
    for run in (validation_run, fixed_run):
        assert run.experiment.baseline_detector == ""
        assert run.leaderboard["baseline"] == "absdiff"  # the only classical one, though listed last
        assert leaderboard.LeaderboardState.default(run).baseline == "absdiff"
        assert _row(run, "external:sharp")["comparison"]["n"] == len(BOXES) - 1


def test_the_benchmark_matrix_marks_a_cell_of_another_protocol(client, user, split_dataset, no_queue):
    from experiments.reporting.benchmarks import benchmark_matrix

    _run(user, split_dataset)
    newest = _run(user, split_dataset, detectors=["external:sharp"], threshold_rule="validation")
    cells = {row["detector"]: row["cells"][0] for row in benchmark_matrix(user)["rows"]}
    assert cells["external:sharp"]["run"] == newest.pk
    assert cells["external:sharp"]["protocol_differs"] == ["threshold: validation (val split) (vs fixed at 0.5)"]
    assert cells["external:sharp"]["threshold_source"] == f"validation ({len(BOXES)} pairs)"
    assert cells["absdiff"]["protocol_differs"] == [] and cells["absdiff"]["threshold_source"] == "fixed"
    client.force_login(user)
    page = client.get("/benchmarks/").content.decode()
    assert page.count("protocol-differs") == 1
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    same = {
        row["detector"]: row["cells"][0] for row in api.get("/api/v1/benchmarks/?same_protocol=true").json()["rows"]
    }
    assert same["external:sharp"] is None and same["absdiff"]["protocol_differs"] == []
    assert api.get("/api/v1/benchmarks/?same_protocol=yes").status_code == 400


def test_the_protocol_records_rule_thresholds_sizes_and_weights(validation_run):
    protocol = protocol_of(validation_run)
    assert protocol["scored_splits"] == ["test"] and protocol["threshold_rule"] == "validation"
    assert protocol["validation"]["split"] == "val" and protocol["alignment"] == "none"
    sharp = protocol["detectors"]["external:sharp"]
    assert sharp["threshold"] == _row(validation_run, "external:sharp")["threshold"]
    assert sharp["threshold_source"].startswith("validation") and sharp["weights"]
    assert protocol["detectors"]["absdiff"]["scaling"] == "none (full size)"
    from experiments.reporting import report

    sharp_threshold = f"external:sharp {sharp['threshold']:.4g}"
    assert "threshold rule validation" in report.markdown(validation_run) and sharp_threshold in report.markdown(
        validation_run
    )
    assert 'id="protocol"' in report.html(validation_run)


def test_the_compare_page_and_api_mark_a_differing_protocol(client, user, validation_run, fixed_run):
    data = comparison.compare_runs([fixed_run, validation_run])
    for row in data["rows"]:
        if row["run"] == fixed_run.pk:
            assert row["protocol_differs"] == []
        else:
            assert any(line.startswith("threshold: validation (val split)") for line in row["protocol_differs"])
    assert all(test["protocol_differs"] for test in data["tests"])
    client.force_login(user)
    page = client.get(f"/compare/?runs={fixed_run.pk},{validation_run.pk}").content.decode()
    assert "protocol-differs" in page and "(vs fixed at 0.5)" in page
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(user)
    answer = api.get(f"/api/v1/compare/?runs={fixed_run.pk},{validation_run.pk}&same_protocol=true")
    assert answer.status_code == 200, answer.content
    assert {row["run"] for row in answer.json()["rows"]} == {fixed_run.pk}
    assert answer.json()["tests"] == [] and answer.json()["same_protocol"] is True
    assert api.get(f"/api/v1/compare/?runs={fixed_run.pk},{validation_run.pk}&same_protocol=maybe").status_code == 400
    board = api.get(f"/api/v1/runs/{validation_run.pk}/leaderboard/").json()
    assert board["protocol"]["threshold_rule"] == "validation"
    assert {row["threshold_source"] for row in board["rows"]} == {f"validation ({len(BOXES)} pairs)"}


def test_it_refuses_a_validation_rule_it_cannot_honour(user, make_pair_bytes, split_dataset):
    def start(dataset, **settings):
        return run_services.experiment_create(owner=user, dataset=dataset, name="x", detectors=["absdiff"], **settings)

    with pytest.raises(ServiceError, match="cannot be scored too"):
        start(split_dataset, threshold_rule="validation", splits=["val", "test"])
    with pytest.raises(ServiceError, match="scoring every pair"):
        start(split_dataset, threshold_rule="validation", splits=[])
    with pytest.raises(ServiceError, match="Unknown threshold rule"):
        start(split_dataset, threshold_rule="oracle", splits=["test"])
    with pytest.raises(ServiceError, match="threshold_rule validation only"):
        start(split_dataset, validation_holdout=0.2, splits=["test"])
    no_val = make_dataset(user, name="no-val")
    for index in range(2):
        a, b, label = make_pair_bytes(size=SIZE, seed=index)
        dataset_services.pair_create(dataset=no_val, name=f"t{index}", a_bytes=a, b_bytes=b, label_bytes=label,
                                     split="test")  # fmt: skip
    with pytest.raises(ServiceError, match="no labelled validation") as refused:
        start(no_val, threshold_rule="validation", splits=["test"])
    assert refused.value.field == "validation_holdout"
    with pytest.raises(ServiceError, match="no labelled train pairs"):
        start(no_val, threshold_rule="validation", validation_holdout=0.2, splits=["test"])


def test_a_seeded_train_holdout_stands_in_for_a_missing_val_split(user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, name="holdout")
    for split, count in (("train", 10), ("test", 2)):
        for index in range(count):
            a, b, label = make_pair_bytes(size=SIZE, seed=index + (50 if split == "test" else 0))
            dataset_services.pair_create(dataset=dataset, name=f"{split}{index}", a_bytes=a, b_bytes=b,
                                         label_bytes=label, split=split)  # fmt: skip
    run = run_services.experiment_start(owner=user, dataset=dataset, name="h", detectors=["absdiff"],
                                        splits=["test"], threshold_rule="validation", validation_holdout=0.2,
                                        seed=3)  # fmt: skip
    held = validation_pairs(run.experiment)
    assert len(held) == 2 and {p.split for p in held} == {"train"}
    assert [p.pk for p in held] == [p.pk for p in validation_pairs(run.experiment)]  # seeded: the same again
    run = run_in_process(run)
    assert run.state == RunState.SUCCEEDED, run.error
    protocol = protocol_of(run)
    from experiments.runs.environment import dataset_manifest_hash

    assert protocol["validation"] == {"split": "train", "holdout": 0.2, "seed": 3, "n_pairs": 2,
                                      "manifest_sha256": dataset_manifest_hash(held),
                                      "label": "a seeded 20% hold-out of the train split (seed 3)"}  # fmt: skip
    assert protocol["detectors"]["absdiff"]["threshold_source"] == "validation (2 pairs)"


def test_the_command_sets_the_rule(user, split_dataset, no_queue):
    call_command("run_experiment", dataset=str(split_dataset.pk), detectors="absdiff", splits="test",
                 threshold_rule="validation", stdout=io.StringIO())  # fmt: skip
    experiment = split_dataset.experiments.get()
    assert experiment.threshold_rule == "validation" and experiment.validation_holdout is None


def test_the_api_refuses_a_rule_it_cannot_honour_with_the_field_named(user, split_dataset):
    from rest_framework.test import APIClient

    from experiments.models import Experiment

    api = APIClient()
    api.force_authenticate(user)
    body = {"dataset": split_dataset.pk, "detectors": ["absdiff"], "splits": ["test"]}
    cases = [
        ({"threshold_rule": "oracle"}, 400, "threshold_rule"),
        ({"threshold_rule": "validation", "splits": ["val", "test"]}, 422, "splits"),
        ({"threshold_rule": "validation", "validation_holdout": 0.2}, 422, "validation_holdout"),
        ({"validation_holdout": "lots"}, 400, "validation_holdout"),
    ]
    for extra, status, field in cases:
        response = api.post("/api/v1/experiments/", {**body, **extra}, format="json")
        assert response.status_code == status, (extra, response.content)
        assert field in response.json()["error"]["fields"], (extra, response.json())
    assert not Experiment.objects.exists()
    created = api.post("/api/v1/experiments/", {**body, "threshold_rule": "validation"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["threshold_rule"] == "validation" and created.json()["validation_holdout"] is None


def test_validation_pairs_without_change_fail_the_detector_with_the_reason(user, make_pair_bytes, no_queue):
    from experiments.runs import engine

    dataset = make_dataset(user, name="quiet-val")
    for split, box in (("val", (0, 0, 0, 0)), ("test", (4, 4, 20, 20))):
        a, b, label = make_pair_bytes(size=SIZE, seed=7, box=box)
        dataset_services.pair_create(dataset=dataset, name=split, a_bytes=a, b_bytes=b, label_bytes=label,
                                     split=split)  # fmt: skip
    run = run_services.experiment_start(owner=user, dataset=dataset, name="q", detectors=["absdiff"],
                                        splits=["test"], threshold_rule="validation")  # fmt: skip
    engine.prepare_run(run.pk)
    with pytest.raises(ValueError, match="no changed pixel"):
        engine.run_detector(run.pk, "absdiff")
    assert not run.results.exists()


def test_a_clone_keeps_the_rule_and_a_retry_keeps_the_frozen_threshold(validation_run):
    from experiments.models import Run

    clone = run_services.run_clone(run=validation_run)
    assert clone.experiment.threshold_rule == "validation"
    # a retry recomputes absdiff's lost results at the threshold its record froze, not a new one
    environment = validation_run.environment
    environment["detector_info"]["absdiff"]["threshold"] = 0.25
    validation_run.results.filter(detector="absdiff").delete()
    Run.objects.filter(pk=validation_run.pk).update(state=RunState.FAILED, environment=environment)
    validation_run.refresh_from_db()
    retried = run_in_process(run_services.run_retry(run=validation_run))
    assert retried.state == RunState.SUCCEEDED, retried.error
    assert _row(retried, "absdiff")["threshold"] == 0.25
    assert retried.results.filter(detector="absdiff").count() == len(BOXES)


def test_the_page_form_sets_the_rule_and_says_what_to_change(client, user, split_dataset, no_queue):
    from django.urls import reverse

    from experiments.models import Experiment

    client.force_login(user)
    form = {"dataset": split_dataset.pk, "detectors": ["absdiff"], "threshold": 0.5, "seed": 0, "splits": "test"}
    refused = client.post(reverse("experiments:experiment_create"), {**form, "threshold_rule": "validation",
                                                                     "validation_holdout": 0.2})  # fmt: skip
    assert refused.status_code == 400 and "validation_holdout is for datasets without one" in refused.content.decode()
    assert not Experiment.objects.exists()
    started = client.post(reverse("experiments:experiment_create"), {**form, "threshold_rule": "validation"})
    assert started.status_code == 302
    experiment = Experiment.objects.get()
    assert experiment.threshold_rule == "validation"
    page = client.get(reverse("experiments:experiment_detail", args=[experiment.pk])).content.decode()
    assert "thresholds chosen per detector on the val split" in page


def test_an_aligned_run_aligns_its_validation_pairs_too(user, split_dataset, no_queue):
    run = _run(user, split_dataset, detectors=["absdiff"], threshold_rule="validation", align=True)
    assert run.alignments.count() == 2 * len(BOXES)
    assert protocol_of(run)["alignment"] != "none"
    assert _row(run, "absdiff")["threshold_source"] == f"validation ({len(BOXES)} pairs)"


def test_the_command_line_table_says_each_threshold_and_its_source(validation_run):
    text = leaderboard.leaderboard_text(validation_run)
    sharp = _row(validation_run, "external:sharp")["threshold"]
    assert "threshold (source)" in text and f"{sharp:.4f} (validation ({len(BOXES)} pairs))" in text
