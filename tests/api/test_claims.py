"""Claimed figures on checkpoints, ONNX models and prediction sets (issue 27 item 6): the owner adds
and lists them; anyone else gets 404 and changes nothing; a claim on the checkpoint a run used is set
beside the run's measured figure."""

import tempfile
from pathlib import Path

import pytest

from experiments.checkpoints import services as checkpoint_services
from experiments.claims.thesis import THESIS_FIGURES
from experiments.models import ClaimedFigure, ModelCheckpoint, PredictionSet, UploadedModel
from experiments.runs import services as run_services
from experiments.runs.engine import finish_run, prepare_run, run_detector

pytestmark = pytest.mark.django_db
CLAIM = {"source": "Doe et al. 2024, table 3", "dataset": "LEVIR-CD", "metric": "iou", "value": 0.83,
         "hardware": "RTX 3090", "input_size": 256}  # fmt: skip


@pytest.fixture
def subjects(user, labelled_dataset):
    """The URL of each kind of thing a claim can go on, all owned by `user`."""
    checkpoint = ModelCheckpoint.objects.create(owner=user, detector="siamese-unet", file_key="k", sha256="1" * 64)
    model = UploadedModel.objects.create(
        owner=user, name="m", file_key="k", sha256="0" * 64, size_bytes=1, mean=[0, 0, 0], std=[1, 1, 1],
        inputs="two", output="probability", state="ready",
    )  # fmt: skip
    predictions = PredictionSet.objects.create(owner=user, dataset=labelled_dataset, name="p", kind="mask")
    return {
        "checkpoint": f"/api/v1/checkpoints/{checkpoint.pk}/claims/",
        "uploaded_model": f"/api/v1/models/{model.pk}/claims/",
        "prediction_set": f"/api/v1/datasets/{labelled_dataset.pk}/predictions/{predictions.pk}/claims/",
    }


@pytest.mark.parametrize("kind", ["checkpoint", "uploaded_model", "prediction_set"])
def test_the_owner_adds_and_lists_claims(api, subjects, kind):
    response = api.post(subjects[kind], CLAIM, format="json")
    assert response.status_code == 201, response.content
    assert {k: response.json()[k] for k in CLAIM} == CLAIM
    claim = ClaimedFigure.objects.get(pk=response.json()["id"])
    assert getattr(claim, f"{kind}_id") is not None and claim.detector == ""
    listed = api.get(subjects[kind]).json()["results"]
    assert [row["id"] for row in listed] == [claim.pk]


@pytest.mark.parametrize("kind", ["checkpoint", "uploaded_model", "prediction_set"])
def test_another_user_gets_404_and_changes_nothing(api, other_api, subjects, kind):
    api.post(subjects[kind], CLAIM, format="json")
    before = ClaimedFigure.objects.count()
    assert other_api.get(subjects[kind]).status_code == 404
    assert other_api.post(subjects[kind], CLAIM, format="json").status_code == 404
    assert ClaimedFigure.objects.count() == before


def test_staff_list_but_only_the_owner_adds(api, staff_user, subjects):
    from tests.api.conftest import token_client

    api.post(subjects["checkpoint"], CLAIM, format="json")
    staff = token_client(staff_user)
    assert len(staff.get(subjects["checkpoint"]).json()["results"]) == 1
    before = ClaimedFigure.objects.count()
    assert staff.post(subjects["checkpoint"], CLAIM, format="json").status_code == 404
    assert ClaimedFigure.objects.count() == before


def test_a_public_checkpoints_claims_are_listed_for_all_and_added_by_none(api):
    shipped = ModelCheckpoint.objects.create(owner=None, is_public=True, detector="siamese-unet", file_key="k",
                                             sha256="2" * 64)  # fmt: skip
    url = f"/api/v1/checkpoints/{shipped.pk}/claims/"
    assert api.get(url).status_code == 200
    assert api.post(url, CLAIM, format="json").status_code == 404 and not ClaimedFigure.objects.filter(
        checkpoint=shipped
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [({"value": 1.5}, "value"), ({"metric": "accuracy"}, "metric"), ({"source": ""}, "source"),
     ({"value": -1}, "value"), ({"input_size": 0}, "input_size"), ({"valeu": 1}, "valeu")],
)  # fmt: skip
def test_a_bad_claim_is_refused_with_its_field_and_nothing_stored(api, subjects, change, field):
    before = ClaimedFigure.objects.count()
    response = api.post(subjects["checkpoint"], {**CLAIM, **change}, format="json")
    assert response.status_code == 400 and field in response.content.decode()
    assert ClaimedFigure.objects.count() == before


def test_the_thesis_claims_ship_with_the_platform():
    from experiments.claims.services import thesis_claims_ensure

    thesis_claims_ensure()
    shipped = {(c.detector, c.metric): c.value for c in ClaimedFigure.objects.filter(owner=None)}
    assert shipped[("siamese-resnet50", "iou")] == 0.89 and shipped[("siamese-vgg16", "memory_mb")] == 548
    assert shipped[("siamese-mobilenetv3", "latency_ms")] == 45
    assert {detector for detector, _ in shipped} == set(THESIS_FIGURES)
    assert thesis_claims_ensure() == 0  # nothing twice


def test_a_claim_on_the_runs_checkpoint_is_shown_beside_the_measured_figure(api, user, labelled_dataset, monkeypatch):
    from inference import create_detector
    from inference.weights import save_checkpoint

    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    detector = create_detector("siamese-unet", weights=None, device="cpu", input_size=32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "unet.pt"
        sha256 = save_checkpoint(path, detector.model.state_dict(), {"detector": "siamese-unet", "input_size": 32})
        checkpoint = checkpoint_services.checkpoint_register(
            owner=user, detector="siamese-unet", dataset=None, data=path.read_bytes(), sha256=sha256, epochs=1,
            val_metrics={}, config={"input_size": 32},
        )  # fmt: skip
    assert api.post(f"/api/v1/checkpoints/{checkpoint.pk}/claims/", CLAIM, format="json").status_code == 201
    experiment = run_services.experiment_create(
        owner=user, dataset=labelled_dataset, name="c", detectors=["siamese-unet"],
        detector_weights={"siamese-unet": f"checkpoint:{sha256}"},
    )  # fmt: skip
    run = run_services.run_start(experiment=experiment)
    prepare_run(run.pk)
    run_detector(run.pk, "siamese-unet")
    finish_run(run.pk)
    table = api.get(f"/api/v1/runs/{run.pk}/thesis-table/").json()
    row = table["rows"][0]
    assert row["claimed_iou"] == 0.83 and row["iou_difference"] == pytest.approx(row["iou"] - 0.83)
    assert row["claim_source"] == CLAIM["source"]
    assert "data: claimed on LEVIR-CD, measured on labelled" in row["differs"]
    assert "input size: claimed at 256 px, measured at 32 px" in row["differs"]
    assert "hardware: claimed on RTX 3090" in row["differs"]
