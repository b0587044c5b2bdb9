"""Experiments, runs, leaderboards and results over the API."""

import csv
import io

import pytest

from experiments.datasets import services as dataset_services
from experiments.models import Experiment, Run, RunState
from tests.api.test_datasets import error_of

pytestmark = pytest.mark.django_db


def create_experiment(api, dataset_id, **extra):
    body = {"dataset": dataset_id, "detectors": ["absdiff", "ssim"], "threshold": 0.3, **extra}
    return api.post("/api/v1/experiments/", body, format="json")


def test_an_experiment_is_created_read_listed_and_deleted(api, labelled_dataset):
    response = create_experiment(api, labelled_dataset.pk, seed=7, baseline_detector="ssim")
    assert response.status_code == 201, response.content
    experiment = response.json()
    assert experiment["detectors"] == ["absdiff", "ssim"] and experiment["seed"] == 7
    assert api.get(f"/api/v1/experiments/{experiment['id']}/").json()["baseline_detector"] == "ssim"
    assert [e["id"] for e in api.get("/api/v1/experiments/").json()["results"]] == [experiment["id"]]
    assert api.delete(f"/api/v1/experiments/{experiment['id']}/").status_code == 204
    assert not Experiment.objects.exists()


def test_an_unknown_detector_is_refused_naming_the_choices(api, labelled_dataset):
    response = create_experiment(api, labelled_dataset.pk, detectors=["absdiff", "magic"])
    assert response.status_code == 422
    message = error_of(response)["fields"]["detectors"][0]
    assert "magic" in message and "ssim" in message
    assert not Experiment.objects.exists()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"input_size": 4}, "input_size"),
        ({"baseline_detector": "x"}, "baseline_detector"),
        ({"detector_weights": {"ssim": "magic"}}, "detector_weights"),
        ({"detectors": []}, "detectors"),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(api, labelled_dataset, extra, field):
    response = create_experiment(api, labelled_dataset.pk, **extra)
    assert response.status_code == (422 if field in ("baseline_detector", "detector_weights") else 400)  # rule/schema
    assert field in error_of(response)["fields"]


def test_an_experiment_on_another_users_dataset_answers_404(other_api, labelled_dataset):
    response = create_experiment(other_api, labelled_dataset.pk)
    assert response.status_code == 404
    assert "dataset" in error_of(response)["fields"]
    assert not Experiment.objects.exists()


def test_starting_a_run_answers_202_with_its_location(api, labelled_dataset):
    experiment = create_experiment(api, labelled_dataset.pk).json()
    response = api.post(f"/api/v1/experiments/{experiment['id']}/runs/")
    assert response.status_code == 202
    run = response.json()
    assert response["Location"].endswith(f"/api/v1/runs/{run['id']}/")
    assert run["state"] == "queued" and run["progress_total"] == 6
    assert api.get(response["Location"]).json()["id"] == run["id"]
    assert [r["id"] for r in api.get(f"/api/v1/experiments/{experiment['id']}/runs/").json()["results"]] == [run["id"]]


def test_a_run_on_an_empty_dataset_is_refused(api, user):
    dataset = dataset_services.dataset_create(owner=user, name="empty")
    experiment = create_experiment(api, dataset.pk).json()
    response = api.post(f"/api/v1/experiments/{experiment['id']}/runs/")
    assert response.status_code == 422
    assert "no image pairs" in error_of(response)["message"]
    assert not Run.objects.exists()


def test_cancel_retry_and_clone_follow_the_state_machine(api, labelled_dataset):
    experiment = create_experiment(api, labelled_dataset.pk).json()
    run = api.post(f"/api/v1/experiments/{experiment['id']}/runs/").json()
    base = f"/api/v1/runs/{run['id']}/"
    assert api.post(base + "retry/").status_code == 409
    cancelled = api.post(base + "cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert error_of(api.post(base + "cancel/"))["code"] == "conflict"
    retried = api.post(base + "retry/")
    assert retried.status_code == 202 and retried.json()["state"] == "queued"
    clone = api.post(base + "clone/")
    assert clone.status_code == 202 and clone.json()["id"] != run["id"]
    assert Run.objects.get(pk=clone.json()["id"]).cloned_from_id == run["id"]
    assert api.delete(f"/api/v1/experiments/{experiment['id']}/").status_code == 409


def test_another_users_run_answers_404_for_every_action(other_api, finished_run):
    base = f"/api/v1/runs/{finished_run.pk}/"
    for method, path in [
        ("get", ""),
        ("post", "cancel/"),
        ("post", "retry/"),
        ("post", "clone/"),
        ("post", "ws-ticket/"),
        ("get", "leaderboard/"),
        ("get", "results/"),
    ]:
        response = getattr(other_api, method)(base + path)
        assert response.status_code == 404, (path, response.status_code)
    assert Run.objects.count() == 1


def test_the_leaderboard_is_409_until_the_run_succeeded(api, labelled_dataset):
    experiment = create_experiment(api, labelled_dataset.pk).json()
    run = api.post(f"/api/v1/experiments/{experiment['id']}/runs/").json()
    response = api.get(f"/api/v1/runs/{run['id']}/leaderboard/")
    assert response.status_code == 409 and "queued" in error_of(response)["message"]
    csv_response = api.get(f"/api/v1/runs/{run['id']}/leaderboard/?format=csv")
    assert csv_response.status_code == 409 and csv_response["Content-Type"] == "application/json"


def test_the_leaderboard_comes_as_ranked_json_and_as_csv(api, finished_run):
    assert finished_run.state == RunState.SUCCEEDED
    board = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/").json()
    assert {row["detector"] for row in board["rows"]} == {"absdiff", "ssim"}
    assert [row["rank"] for row in board["rows"]] == [1, 2]
    assert board["rows"][0]["pooled_f1"] >= board["rows"][1]["pooled_f1"]
    response = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["detector"] for r in rows] == [r["detector"] for r in board["rows"]]
    assert float(rows[0]["pooled_iou"]) == pytest.approx(board["rows"][0]["pooled_iou"])


def test_results_filter_order_and_page_with_media_links(api, finished_run):
    base = f"/api/v1/runs/{finished_run.pk}/results/"
    everything = api.get(base).json()["results"]
    assert len(everything) == 6
    only = api.get(base, {"detector": "ssim", "category": "roads"}).json()["results"]
    assert {(r["detector"], r["pair"]["category"]) for r in only} == {("ssim", "roads")} and len(only) == 2
    low = min(r["iou"] for r in everything)
    assert all(r["iou"] > low for r in api.get(base, {"iou_min": low + 1e-9}).json()["results"])
    first = api.get(base, {"ordering": "-iou", "page_size": 4}).json()
    second = api.get(first["next"]).json()
    ious = [r["iou"] for r in first["results"] + second["results"]]
    assert ious == sorted(ious, reverse=True) and len(ious) == 6 and second["next"] is None
    result = everything[0]
    assert "hist_pos" not in result["metrics"] and "iou" in result["metrics"]
    for key in ("heatmap_url", "mask_url", "error_map_url"):
        image = api.get(result[key])
        assert image.status_code == 200 and b"".join(image.streaming_content)[:4] == b"\x89PNG"


def test_bad_result_filters_are_refused(api, finished_run):
    response = api.get(f"/api/v1/runs/{finished_run.pk}/results/", {"ordering": "password", "iou_min": "x"})
    assert response.status_code == 400
    assert {"ordering", "iou_min"} <= set(error_of(response)["fields"])


def test_media_of_another_user_answers_404(other_api, api, finished_run):
    url = api.get(f"/api/v1/runs/{finished_run.pk}/results/").json()["results"][0]["heatmap_url"]
    assert other_api.get(url).status_code == 404


def test_the_api_takes_splits_and_a_null_input_size(api, labelled_dataset, no_queue):
    body = {"dataset": labelled_dataset.pk, "detectors": ["absdiff"], "splits": [], "input_size": None}
    experiment = api.post("/api/v1/experiments/", body, format="json").json()
    assert experiment["splits"] == [] and experiment["input_size"] is None
    run = api.post(f"/api/v1/experiments/{experiment['id']}/runs/").json()
    assert run["progress_total"] == labelled_dataset.pairs.count()
    refused = api.post("/api/v1/experiments/", {**body, "splits": ["holdout"]}, format="json")
    assert refused.status_code == 400 and "splits" in error_of(refused)["fields"]
