"""Batch jobs: creation from loose files or a zip, idempotency, state and the result archive."""

import csv
import io
import zipfile

import pytest

from experiments.models import BatchJob, Dataset, RunState
from tests.api.conftest import finish_run_in_process, upload
from tests.api.test_datasets import bomb_zip, error_of

pytestmark = pytest.mark.django_db


def loose_files(make_pair_bytes, count=2, seed=0):
    files = {"image_a": [], "image_b": [], "label": []}
    for i in range(count):
        a, b, label = make_pair_bytes(seed=seed + i)
        files["image_a"].append(upload(f"site{i}_A.png", a))
        files["image_b"].append(upload(f"site{i}_B.png", b))
        files["label"].append(upload(f"site{i}_label.png", label))
    return files


def post_batch(api, files, detectors=("absdiff", "ssim"), key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post("/api/v1/batches/", {**files, "detectors": list(detectors)}, **headers)


def test_a_batch_of_loose_files_makes_a_hidden_dataset_and_a_queued_run(api, make_pair_bytes):
    response = post_batch(api, loose_files(make_pair_bytes))
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["state"] == "queued" and job["total"] == 4 and job["detectors"] == ["absdiff", "ssim"]
    assert response["Location"].endswith(f"/api/v1/batches/{job['id']}/")
    dataset = Dataset.objects.get()
    assert sorted(dataset.pairs.values_list("name", flat=True)) == ["site0", "site1"]
    assert api.get("/api/v1/datasets/").json()["results"] == []
    assert api.get("/api/v1/experiments/").json()["results"] == []
    assert api.get(f"/api/v1/batches/{job['id']}/").json()["state"] == "queued"


def test_a_batch_from_a_zip_with_comma_separated_detectors(api, levir_zip):
    response = api.post("/api/v1/batches/", {"archive": upload("b.zip", levir_zip(3)), "detectors": "absdiff,ssim"})
    assert response.status_code == 202, response.content
    assert response.json()["total"] == 6


def test_the_same_idempotency_key_and_payload_give_the_same_job(api, make_pair_bytes, snapshot_state):
    first = post_batch(api, loose_files(make_pair_bytes), key="k-1")
    after_first = snapshot_state()
    again = post_batch(api, loose_files(make_pair_bytes), key="k-1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert snapshot_state() == after_first


def test_the_same_key_with_another_payload_is_refused(api, make_pair_bytes, snapshot_state):
    post_batch(api, loose_files(make_pair_bytes), key="k-1")
    before = snapshot_state()
    response = post_batch(api, loose_files(make_pair_bytes, seed=5), key="k-1")
    assert response.status_code == 422
    assert "different batch" in error_of(response)["message"]
    assert post_batch(api, loose_files(make_pair_bytes), detectors=["absdiff"], key="k-1").status_code == 422
    assert snapshot_state() == before


def test_a_key_whose_job_is_still_being_created_answers_409(api, user, make_pair_bytes):
    from experiments.batches import services as batches
    from tests.api.conftest import row_counts

    uploads = {"a": [], "b": []}
    for i in range(2):
        a, b, _ = make_pair_bytes(seed=i)
        uploads["a"].append((f"site{i}_A.png", a))
        uploads["b"].append((f"site{i}_B.png", b))
    files = batches.files_from_uploads(uploads)
    digest = batches.payload_digest(files, ["absdiff"], batches.batch_options())
    BatchJob.objects.create(owner=user, idempotency_key="k-2", payload_sha256=digest, detectors=["absdiff"])
    before = row_counts()
    files = {
        "image_a": [upload(f"site{i}_A.png", make_pair_bytes(seed=i)[0]) for i in range(2)],
        "image_b": [upload(f"site{i}_B.png", make_pair_bytes(seed=i)[1]) for i in range(2)],
    }
    response = post_batch(api, files, detectors=["absdiff"], key="k-2")
    assert response.status_code == 409
    assert "still being created" in error_of(response)["message"]
    assert row_counts() == before


def test_keys_are_per_user(api, other_api, make_pair_bytes):
    mine = post_batch(api, loose_files(make_pair_bytes), key="shared")
    theirs = post_batch(other_api, loose_files(make_pair_bytes), key="shared")
    assert theirs.status_code == 202 and theirs.json()["id"] != mine.json()["id"]
    assert other_api.get(f"/api/v1/batches/{mine.json()['id']}/").status_code == 404
    assert other_api.get(f"/api/v1/batches/{mine.json()['id']}/archive/").status_code == 404


@pytest.mark.parametrize(
    ("files", "status", "text"),
    [
        (lambda mk: {"image_a": [upload("x_A.png", mk()[0])], "image_b": [upload("y_B.png", mk()[1])]}, 422, "no B"),
        (lambda mk: {"image_a": [upload("x_A.png", b"nope")], "image_b": [upload("x_B.png", mk()[1])]}, 422, "x"),
        (lambda mk: {"archive": upload("b.zip", bomb_zip())}, 422, "zip bomb"),
        (lambda mk: {}, 422, "image_a"),
    ],
    ids=["unmatched", "bad-image", "bomb", "nothing"],
)
def test_bad_batches_are_refused_and_leave_nothing(api, make_pair_bytes, snapshot_state, files, status, text):
    before = snapshot_state()
    response = post_batch(api, files(make_pair_bytes), key="bad")
    assert response.status_code == status, response.content
    assert text in str(error_of(response))
    assert snapshot_state() == before


def test_an_unknown_detector_is_refused_and_leaves_nothing(api, make_pair_bytes, snapshot_state):
    before = snapshot_state()
    response = post_batch(api, loose_files(make_pair_bytes), detectors=["absdiff", "magic"])
    assert response.status_code == 422 and "detectors" in error_of(response)["fields"]
    assert snapshot_state() == before


def test_a_failure_while_creating_removes_the_job_its_rows_and_files(api, make_pair_bytes, snapshot_state, monkeypatch):
    from experiments.runs import services

    def broken_run_start(**kwargs):
        raise RuntimeError("queue unavailable")

    monkeypatch.setattr(services, "run_start", broken_run_start)
    before = snapshot_state()
    with pytest.raises(RuntimeError):
        post_batch(api, loose_files(make_pair_bytes), key="k-3")
    assert snapshot_state() == before


def test_the_archive_is_409_while_queued_and_a_zip_once_succeeded(api, make_pair_bytes):
    job = post_batch(api, loose_files(make_pair_bytes)).json()
    response = api.get(f"/api/v1/batches/{job['id']}/archive/")
    assert response.status_code == 409 and response["Content-Type"] == "application/json"
    run = finish_run_in_process(BatchJob.objects.get(pk=job["id"]).run)
    assert run.state == RunState.SUCCEEDED
    assert api.get(f"/api/v1/batches/{job['id']}/").json()["state"] == "succeeded"
    response = api.get(f"/api/v1/batches/{job['id']}/archive/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    for detector in ("absdiff", "ssim"):
        for pair in ("site0", "site1"):
            assert {f"masks/{detector}/{pair}.png", f"heatmaps/{detector}/{pair}.png"} <= names
    rows = list(csv.DictReader(io.StringIO(archive.read("metrics.csv").decode())))
    assert {(r["pair"], r["detector"]) for r in rows} == {
        (p, d) for p in ("site0", "site1") for d in ("absdiff", "ssim")
    }
    assert all(0.0 <= float(r["iou"]) <= 1.0 for r in rows)
    key = BatchJob.objects.get(pk=job["id"]).archive_key
    assert (
        key.startswith(f"runs/{run.pk}/")
        and api.get(f"/api/v1/batches/{job['id']}/archive/").content == response.content
    )
