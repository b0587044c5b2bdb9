"""Uploaded predictions (`external:<name>`): checked whole before anything is written, scored like any
detector, and never served a stale cached result."""

import io
import zipfile

import numpy as np
import pytest
from sklearn.metrics import f1_score

from experiments import storage
from experiments.datasets import services as dataset_services
from experiments.errors import InvalidState
from experiments.models import PairPrediction, PredictionSet, Result, Run, RunState
from experiments.predictions import services as prediction_services
from experiments.predictions.services import PredictionsRejected
from experiments.reporting import leaderboard
from experiments.runs import services as run_services
from tests.conftest import png_bytes
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db

SIZE = 48


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def probability_map(seed: int, label: np.ndarray) -> np.ndarray:
    """A noisy but informative float32 probability in [0, 1]."""
    rng = np.random.default_rng(100 + seed)
    return np.clip(0.6 * label + rng.normal(0.2, 0.25, label.shape), 0, 1).astype(np.float32)


@pytest.fixture
def dataset(user, make_pair_bytes):
    """Four pairs; `twin` is in both train and test (names are unique per split only)."""
    dataset = make_dataset(user)
    for index, (name, split) in enumerate([("p0", "test"), ("p1", "test"), ("twin", "train"), ("twin", "test")]):
        a, b, label = make_pair_bytes(size=SIZE, seed=index, box=(4 + 3 * index, 6, 20 + 2 * index, 30))
        dataset_services.pair_create(dataset=dataset, name=name, a_bytes=a, b_bytes=b, label_bytes=label, split=split)
    return dataset


def labels_of(dataset) -> dict[str, np.ndarray]:
    from inference.images import load_mask

    return {f"{p.split}/{p.name}": load_mask(storage.read_bytes(p.label))[0] for p in dataset.pairs.all()}


def probability_files(dataset) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """One file per pair: float32 .npy, a 16-bit PNG and an 8-bit PNG among them; and the maps they hold."""
    files, maps = {}, {}
    for index, (key, label) in enumerate(sorted(labels_of(dataset).items())):
        prob = probability_map(index, label.astype(np.float32))
        split, name = key.split("/")
        path = f"{split}/{name}" if name == "twin" else name
        if index == 1:
            levels = np.round(prob * 65535).astype(np.uint16)
            files[f"{path}.png"], maps[key] = png_bytes(levels), levels.astype(np.float64) / 65535
        elif index == 2:
            levels = np.round(prob * 255).astype(np.uint8)
            files[f"{path}.png"], maps[key] = png_bytes(levels), levels.astype(np.float64) / 255
        else:
            files[f"{path}.npy"], maps[key] = npy_bytes(prob), prob
    return files, maps


def pop_file(files: dict, stem: str) -> tuple[str, bytes]:
    """Take out the file of `stem` (whichever extension it has): `(its path, its bytes)`."""
    path = next(p for p in files if p.rpartition(".")[0] == stem)
    return path, files.pop(path)


def upload(user, dataset, files, name="mine", kind="probability"):
    return prediction_services.prediction_set_upload(
        owner=user, dataset=dataset, name=name, kind=kind, archive=zip_bytes(files)
    )


def score(user, dataset, detectors, threshold=0.5) -> Run:
    run = run_services.experiment_start(
        owner=user, dataset=dataset, name="e", detectors=detectors, threshold=threshold, splits=[]
    )
    return run_in_process(run)


def row_of(run: Run, name: str) -> dict:
    return next(r for r in run.leaderboard["detectors"] if r["detector"] == name)


def test_pooled_f1_of_uploaded_probabilities_equals_sklearn_on_the_same_files(user, dataset, no_queue):
    files, maps = probability_files(dataset)
    upload(user, dataset, files)
    threshold = 0.55
    run = score(user, dataset, ["external:mine", "absdiff"], threshold=threshold)
    assert run.state == RunState.SUCCEEDED, run.error
    labels = labels_of(dataset)
    keys = sorted(labels)
    truth = np.concatenate([labels[k].ravel() for k in keys])
    predicted = np.concatenate([(maps[k] >= threshold).ravel() for k in keys])
    expected = f1_score(truth, predicted)
    assert 0.3 < expected < 0.99  # neither trivial nor perfect: the comparison can fail
    assert row_of(run, "external:mine")["pooled"]["f1"] == pytest.approx(expected, rel=1e-12)
    assert Result.objects.filter(run=run, detector="external:mine").count() == 4


def test_a_mask_upload_scores_its_nonzero_pixels_as_change(user, dataset, no_queue):
    labels = labels_of(dataset)
    files, truth, predicted = {}, [], []
    for index, key in enumerate(sorted(labels)):
        mask = np.roll(labels[key], index + 1, axis=1).astype(np.uint8) * (index + 3)  # any nonzero level
        split, name = key.split("/")
        files[f"{split}/{name}.png" if name == "twin" else f"{name}.png"] = png_bytes(mask)
        truth.append(labels[key].ravel())
        predicted.append((mask > 0).ravel())
    upload(user, dataset, files, kind="mask")
    run = score(user, dataset, ["external:mine"])
    expected = f1_score(np.concatenate(truth), np.concatenate(predicted))
    assert row_of(run, "external:mine")["pooled"]["f1"] == pytest.approx(expected, rel=1e-12)


def test_latency_and_memory_are_not_measured_and_say_so(user, dataset, no_queue):
    files, _ = probability_files(dataset)
    upload(user, dataset, files)
    run = score(user, dataset, ["external:mine", "absdiff"])
    row = row_of(run, "external:mine")
    assert row["latency_ms_p50"] is None and row["peak_memory_mb"] is None and row["n_timed"] == 0
    assert row["family"] == "external" and row["weights"] == "external"
    assert row["weights_sha256"] == PredictionSet.objects.get().archive_sha256
    record = run.environment["detector_info"]["external:mine"]
    assert record["latency"] == record["memory"] == "not measured here"
    assert all(r.latency_ms is None for r in Result.objects.filter(run=run, detector="external:mine"))
    assert row_of(run, "absdiff")["latency_ms_p50"] is not None  # the other detector is measured as ever
    csv = leaderboard.leaderboard_csv(run)
    assert "not measured here" in csv


def test_missing_and_unknown_names_are_refused_with_their_lists_and_nothing_is_written(user, dataset):
    files, _ = probability_files(dataset)
    pop_file(files, "p1")
    files["stranger.npy"] = npy_bytes(np.zeros((SIZE, SIZE), np.float32))
    with pytest.raises(PredictionsRejected) as refused:
        upload(user, dataset, files)
    assert refused.value.report["missing"] == ["p1"]
    assert refused.value.report["unknown"] == ["stranger.npy"]
    assert "p1" in refused.value.message and "stranger.npy" in refused.value.message
    assert not PredictionSet.objects.exists() and not PairPrediction.objects.exists()
    assert not [k for k in storage.list_all_keys() if "/predictions/" in k]


def test_a_name_in_two_splits_needs_its_split_prefix(user, dataset):
    files, _ = probability_files(dataset)
    path, data = pop_file(files, "test/twin")
    bare = path.removeprefix("test/")
    files[bare] = data
    with pytest.raises(PredictionsRejected) as refused:
        upload(user, dataset, files)
    assert (
        f"{bare}: pair 'twin' is in splits test, train; name the file <split>/{bare}"
        in (refused.value.report["ambiguous"])
    )
    assert "train/twin" not in refused.value.report["missing"] and "test/twin" in refused.value.report["missing"]
    assert not PredictionSet.objects.exists()


def test_a_map_of_the_wrong_size_is_refused_naming_the_pair_and_both_sizes(user, dataset):
    files, _ = probability_files(dataset)
    pop_file(files, "p0")
    files["p0.npy"] = npy_bytes(np.zeros((SIZE, SIZE + 16), np.float32))
    with pytest.raises(PredictionsRejected, match=r"p0.*64x48.*48x48"):
        upload(user, dataset, files)
    assert not PredictionSet.objects.exists()
    assert not [k for k in storage.list_all_keys() if "/predictions/" in k]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (npy_bytes(np.array([{"x": 1}] * 4, dtype=object).reshape(2, 2)), "pickle"),
        (npy_bytes(np.zeros((SIZE, SIZE), np.int64)), "float32"),
        (npy_bytes(np.full((SIZE, SIZE), 1.5, np.float32)), r"\[0, 1\]"),
        (npy_bytes(np.random.default_rng(0).random((SIZE, SIZE, 3), np.float32)), "2-D"),
        (b"not a numpy file", "not a readable .npy"),
    ],
    ids=["pickle", "integer", "out-of-range", "3-d", "garbage"],
)
def test_an_unusable_npy_is_refused_and_never_unpickled(user, dataset, content, message, monkeypatch):
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a pickle was loaded"))
    files, _ = probability_files(dataset)
    pop_file(files, "p0")
    files["p0.npy"] = content
    with pytest.raises(PredictionsRejected, match=message):
        upload(user, dataset, files)
    assert not PredictionSet.objects.exists()


def test_zip_traversal_and_bad_fields_are_refused(user, dataset):
    files, _ = probability_files(dataset)
    with pytest.raises(PredictionsRejected, match="outside the archive"):
        upload(user, dataset, {**files, "../evil.npy": b"x"})
    with pytest.raises(prediction_services.ServiceError, match="Kind must be"):
        upload(user, dataset, files, kind="heatmap")
    with pytest.raises(prediction_services.ServiceError, match="not allowed"):
        upload(user, dataset, files, name="has space")
    upload(user, dataset, files)
    with pytest.raises(prediction_services.ServiceError, match="already has predictions called 'mine'"):
        upload(user, dataset, files)
    assert PredictionSet.objects.count() == 1


def test_a_failure_while_storing_leaves_no_rows_and_no_files(user, dataset, monkeypatch):
    files, _ = probability_files(dataset)
    real_save, calls = storage.save_bytes, []

    def failing_save(key, data):
        calls.append(key)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_save(key, data)

    monkeypatch.setattr(storage, "save_bytes", failing_save)
    with pytest.raises(OSError):
        upload(user, dataset, files)
    assert not PredictionSet.objects.exists() and not PairPrediction.objects.exists()
    assert not [k for k in storage.list_all_keys() if "/predictions/" in k]


def test_a_reupload_under_a_new_name_gives_new_results_not_cached_ones(user, dataset, no_queue):
    files, _ = probability_files(dataset)
    upload(user, dataset, files, name="v1")
    first = score(user, dataset, ["external:v1"])
    again = score(user, dataset, ["external:v1"])
    assert all(r.from_cache for r in Result.objects.filter(run=again))  # same maps: served from the cache
    inverted = {}
    for path, data in files.items():
        if path.endswith(".npy"):
            inverted[path] = npy_bytes((1 - np.load(io.BytesIO(data))).astype(np.float32))
        else:
            inverted[path] = data
    upload(user, dataset, inverted, name="v2")
    second = score(user, dataset, ["external:v2"])
    assert not any(r.from_cache for r in Result.objects.filter(run=second))
    assert row_of(second, "external:v2")["pooled"]["f1"] != row_of(first, "external:v1")["pooled"]["f1"]


def test_predictions_belong_to_their_dataset_and_owner(user, other_user, dataset, make_pair_bytes, no_queue):
    files, _ = probability_files(dataset)
    upload(user, dataset, files)
    elsewhere = make_dataset(user, name="other", pairs=[("p0", *make_pair_bytes(size=SIZE))])
    with pytest.raises(run_services.ServiceError, match="uploaded for dataset 'ds'"):
        run_services.experiment_start(owner=user, dataset=elsewhere, name="e", detectors=["external:mine"])
    with pytest.raises(prediction_services.ServiceError, match="Only the dataset's owner"):
        upload(other_user, dataset, files, name="theirs")


def test_deleting_a_set_removes_its_rows_and_files_but_not_while_a_run_scores_it(
    user, dataset, no_queue, django_capture_on_commit_callbacks
):
    files, _ = probability_files(dataset)
    predictions = upload(user, dataset, files)
    keys = list(predictions.predictions.values_list("file_key", flat=True))
    assert len(keys) == 4 and all(storage.exists(k) for k in keys)
    run_services.experiment_start(owner=user, dataset=dataset, name="e", detectors=["external:mine"], splits=[])
    with pytest.raises(InvalidState, match="still active"):
        prediction_services.prediction_set_delete(prediction_set=predictions)
    Run.objects.update(state=RunState.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        prediction_services.prediction_set_delete(prediction_set=predictions)
    assert not PredictionSet.objects.exists() and not PairPrediction.objects.exists()
    assert not any(storage.exists(k) for k in keys)


def test_run_pages_say_not_measured_for_uploaded_predictions(client, user, dataset, no_queue):
    from django.urls import reverse

    files, _ = probability_files(dataset)
    upload(user, dataset, files)
    run = score(user, dataset, ["external:mine", "absdiff"])
    client.force_login(user)
    page = client.get(reverse("experiments:run_detail", args=[run.pk])).content.decode()
    external_row = page.split('data-detector="external:mine"', 1)[1].split("</tr>", 1)[0]
    assert external_row.count("not measured here</span>") == 5  # latency p50 and p95, throughput, both memories
    absdiff_row = page.split('data-detector="absdiff"', 1)[1].split("</tr>", 1)[0]
    assert "not measured here" not in absdiff_row
    pair = dataset.pairs.get(name="p0")
    detail = client.get(reverse("experiments:pair_detail", args=[run.pk, pair.pk])).content.decode()
    assert detail.count("not measured here") == 1
    assert client.get(reverse("experiments:run_gallery", args=[run.pk])).status_code == 200


def test_the_dataset_page_uploads_lists_and_deletes_predictions(
    client, user, other_user, dataset, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    files, _ = probability_files(dataset)
    client.force_login(user)
    url = reverse("experiments:prediction_upload", args=[dataset.pk])
    archive = SimpleUploadedFile("maps.zip", zip_bytes(files), content_type="application/zip")
    response = client.post(url, {"predictions-name": "web", "predictions-kind": "probability",
                                 "predictions-archive": archive}, follow=True)  # fmt: skip
    text = response.content.decode()
    assert "Uploaded external:web" in text and 'data-prediction-set="web"' in text
    pop_file(files, "p0")
    archive = SimpleUploadedFile("maps.zip", zip_bytes(files), content_type="application/zip")
    response = client.post(url, {"predictions-name": "short", "predictions-kind": "probability",
                                 "predictions-archive": archive}, follow=True)  # fmt: skip
    assert "Predictions not uploaded" in response.content.decode() and "have no file: p0" in response.content.decode()
    assert list(PredictionSet.objects.values_list("name", flat=True)) == ["web"]
    predictions = PredictionSet.objects.get()
    delete_url = reverse("experiments:prediction_delete", args=[dataset.pk, predictions.pk])
    client.force_login(other_user)
    assert client.post(delete_url).status_code == 404
    assert client.post(url, {"predictions-name": "x"}).status_code == 404
    client.force_login(user)
    confirm = client.get(delete_url).content.decode()
    assert "Delete external:web?" in confirm and PredictionSet.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(delete_url, follow=True)
    assert "Deleted external:web" in response.content.decode() and not PredictionSet.objects.exists()


def test_a_pair_added_after_the_upload_fails_only_that_detector_saying_why(user, dataset, make_pair_bytes, no_queue):
    from experiments.runs import engine, tasks

    files, _ = probability_files(dataset)
    upload(user, dataset, files)
    a, b, label = make_pair_bytes(size=SIZE, seed=9)
    dataset_services.pair_create(dataset=dataset, name="late", a_bytes=a, b_bytes=b, label_bytes=label, split="test")
    run = run_services.experiment_start(
        owner=user, dataset=dataset, name="e", detectors=["external:mine", "absdiff"], splits=[]
    )
    engine.prepare_run(run.pk)
    for name in run.experiment.detectors:
        tasks.run_detector.apply(args=[run.pk, name])
    tasks.finish_run.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.state == RunState.PARTIAL
    assert "external:mine" in run.error and "no map for pair 'late'" in run.error
    assert row_of(run, "absdiff")["pooled"]["f1"] is not None


def test_pooled_f1_on_real_levir_crops_equals_sklearn(user, no_queue):
    """Real LEVIR-CD crops and labels; a realistic probability map (the label blurred, shifted and
    noised) as a 16-bit PNG per pair; the run's pooled F1 against sklearn on the same files."""
    from PIL import Image
    from scipy import ndimage

    from tests.shared_data import shared_folder

    folder = shared_folder("levir_cd_bit_samples")
    names = ["test_2_0000_0000", "test_55_0256_0000", "test_77_0512_0256"]
    dataset = make_dataset(user, name="levir")
    files, truth, predicted = {}, [], []
    rng = np.random.default_rng(7)
    for name in names:
        label_bytes = (folder / "label" / f"{name}.png").read_bytes()
        dataset_services.pair_create(
            dataset=dataset, name=name, a_bytes=(folder / "A" / f"{name}.png").read_bytes(),
            b_bytes=(folder / "B" / f"{name}.png").read_bytes(), label_bytes=label_bytes, split="test",
        )  # fmt: skip
        label = np.asarray(Image.open(io.BytesIO(label_bytes))) > 127
        prob = ndimage.gaussian_filter(np.roll(label.astype(np.float64), 3, axis=0), 2.0)
        prob = np.clip(prob + rng.normal(0, 0.08, prob.shape), 0, 1)
        levels = np.round(prob * 65535).astype(np.uint16)
        files[f"{name}.png"] = png_bytes(levels)
        truth.append(label.ravel())
        predicted.append((levels / 65535 >= 0.5).ravel())
    upload(user, dataset, files)
    run = score(user, dataset, ["external:mine"])
    expected = f1_score(np.concatenate(truth), np.concatenate(predicted))
    assert 0.3 < expected < 0.99
    assert row_of(run, "external:mine")["pooled"]["f1"] == pytest.approx(expected, rel=1e-12)
