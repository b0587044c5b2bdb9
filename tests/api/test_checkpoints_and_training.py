"""Checkpoint uploads (validated with torch.load(weights_only=True)) and training jobs."""

import pickle

import pytest

from experiments.models import ModelCheckpoint, TrainingJob
from experiments.training import services as training_services
from tests.api.conftest import upload
from tests.api.test_datasets import error_of

pytestmark = pytest.mark.django_db


class Payload:
    """An arbitrary object: unpickling it would call `print`, which weights_only must refuse."""

    def __reduce__(self):
        return (print, ("this must never run",))


def checkpoint_bytes(tmp_path, detector="siamese-unet", suffix=".pt", meta_extra=None, state_dict=None) -> bytes:
    """A checkpoint whose tensors fit siamese-unet's network (or `state_dict`)."""
    import torch

    from inference.registry import get_spec
    from inference.weights import save_checkpoint

    if state_dict is None:
        torch.manual_seed(0)
        state_dict = get_spec("siamese-unet").resolve_model_factory()(None).state_dict()
    path = tmp_path / f"c{suffix}"
    save_checkpoint(path, state_dict, {"detector": detector, "epochs": 3, **(meta_extra or {})})
    return path.read_bytes()


def post_checkpoint(api, name, data, **fields):
    return api.post("/api/v1/checkpoints/", {"file": upload(name, data, "application/octet-stream"), **fields})


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_checkpoint_is_uploaded_registered_and_listed(api, tmp_path, suffix):
    response = post_checkpoint(api, f"w{suffix}", checkpoint_bytes(tmp_path, suffix=suffix), detector="siamese-unet")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["detector"] == "siamese-unet" and body["epochs"] == 3 and body["mine"]
    assert body["provenance"] == f"checkpoint:{body['sha256']}"
    assert [c["id"] for c in api.get("/api/v1/checkpoints/").json()["results"]] == [body["id"]]
    detectors = {d["name"]: d for d in api.get("/api/v1/detectors/").json()}
    assert detectors["siamese-unet"]["weights"] == body["provenance"] and detectors["siamese-unet"]["weights_available"]
    assert post_checkpoint(api, f"w{suffix}", checkpoint_bytes(tmp_path, suffix=suffix)).status_code == 200
    assert ModelCheckpoint.objects.count() == 1


def test_a_pickle_of_arbitrary_objects_is_refused_and_nothing_runs_or_stays(api, snapshot_state, capsys):
    before = snapshot_state()
    response = post_checkpoint(api, "evil.pt", pickle.dumps({"state_dict": Payload()}))
    assert response.status_code == 422
    error = error_of(response)
    assert "weights_only" in error["message"] and "plain tensor checkpoints" in error["message"]
    assert "this must never run" not in capsys.readouterr().out
    assert snapshot_state() == before


@pytest.mark.parametrize(
    ("detector", "given", "expected"),
    [
        ("magic", None, "unknown detector"),
        ("absdiff", None, "not a learned detector"),
        ("siamese-unet", "siamese-vgg16", "saved for 'siamese-unet'"),
    ],
)
def test_a_checkpoint_for_the_wrong_detector_is_refused(api, tmp_path, snapshot_state, detector, given, expected):
    before = snapshot_state()
    fields = {"detector": given} if given else {}
    response = post_checkpoint(api, "w.pt", checkpoint_bytes(tmp_path, detector=detector), **fields)
    assert response.status_code == 422
    assert expected in error_of(response)["message"]
    assert snapshot_state() == before


def test_a_file_that_is_not_a_checkpoint_is_refused(api, tmp_path):
    assert post_checkpoint(api, "notes.txt", b"hello").status_code == 422
    assert post_checkpoint(api, "random.pt", b"\x00\x01garbage").status_code == 422


def test_checkpoints_of_other_users_are_invisible_unless_public(api, other_api, tmp_path, other_user):
    post_checkpoint(other_api, "w.pt", checkpoint_bytes(tmp_path))
    assert api.get("/api/v1/checkpoints/").json()["results"] == []
    detectors = {d["name"]: d for d in api.get("/api/v1/detectors/").json()}
    assert detectors["siamese-unet"]["weights"] == "untrained" and detectors["absdiff"]["weights"] == "none"
    response = post_checkpoint(api, "w.pt", checkpoint_bytes(tmp_path))
    assert response.status_code == 409
    ModelCheckpoint.objects.update(is_public=True)
    assert len(api.get("/api/v1/checkpoints/").json()["results"]) == 1


def test_the_detector_list_takes_its_facts_from_the_catalogue(api):
    from experiments.plans.kinds import plan
    from inference.catalogue import catalogue_entry, catalogue_names

    listed = api.get("/api/v1/detectors/").json()
    assert [d["name"] for d in listed] == catalogue_names()
    for record in listed:
        entry = catalogue_entry(record["name"])
        assert (record["params"], record["input_size"]) == (entry.params, entry.input_size), record["name"]
        queue = plan(None, record["name"]).queue
        assert (record["family"], record["learned"], record["queue"]) == (entry.family, entry.learned, queue)
    assert {d["name"] for d in listed if d["sync_diff"]} == {"absdiff", "ssim"}
    assert {d["queue"] for d in listed if d["learned"]} == {"gpu"}


def test_a_training_job_is_started_read_and_cancelled(api, labelled_dataset):
    response = api.post(
        "/api/v1/training/", {"detector": "siamese-unet", "dataset": labelled_dataset.pk, "epochs": 2}, format="json"
    )
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["state"] == "queued" and job["config"]["epochs"] == 2
    assert api.get(response["Location"]).json()["id"] == job["id"]
    cancelled = api.post(f"/api/v1/training/{job['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert api.post(f"/api/v1/training/{job['id']}/cancel/").status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"detector": "absdiff"}, "detector"),
        ({"detector": "magic"}, "detector"),
        ({"detector": "siamese-unet", "loss": "hinge"}, "loss"),
        ({"detector": "siamese-unet", "epochs": 0}, "epochs"),
    ],
)
def test_bad_training_requests_are_refused(api, labelled_dataset, body, field):
    response = api.post("/api/v1/training/", {"dataset": labelled_dataset.pk, **body}, format="json")
    assert response.status_code == (400 if field in ("loss", "epochs") else 422)  # schema, else a rule
    assert field in error_of(response)["fields"]
    assert not TrainingJob.objects.exists()


def test_training_is_isolated_between_users(api, other_api, labelled_dataset):
    response = other_api.post(
        "/api/v1/training/", {"detector": "siamese-unet", "dataset": labelled_dataset.pk}, format="json"
    )
    assert response.status_code == 404
    job = training_services.training_start(
        owner=labelled_dataset.owner, detector="siamese-unet", dataset=labelled_dataset
    )
    assert other_api.get(f"/api/v1/training/{job.pk}/").status_code == 404
    assert other_api.post(f"/api/v1/training/{job.pk}/cancel/").status_code == 404
    assert other_api.get("/api/v1/training/").json()["results"] == []


def test_a_checkpoint_that_cannot_be_checked_now_answers_503_and_stores_nothing(api, tmp_path, snapshot_state,
                                                                                 monkeypatch):  # fmt: skip
    from inference import sandbox

    def no_process(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    data = checkpoint_bytes(tmp_path)
    before = snapshot_state()
    monkeypatch.setattr(sandbox.subprocess, "Popen", no_process)
    response = post_checkpoint(api, "w.pt", data)
    assert response.status_code == 503
    assert "upload it again" in error_of(response)["message"]
    assert snapshot_state() == before
