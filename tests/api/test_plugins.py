"""A detector plug-in is a first-class detector over the API: listed, chosen, run, reported."""

import pytest

from experiments.models import Result, Run, RunState
from inference.catalogue import catalogue_entry
from tests.api.conftest import finish_run_in_process

pytestmark = pytest.mark.django_db


def test_the_plugin_is_listed_with_its_catalogue_facts(api, gradient_plugin):
    listed = {d["name"]: d for d in api.get("/api/v1/detectors/").json()}
    record = listed[gradient_plugin]
    entry = catalogue_entry(gradient_plugin)
    assert record["family"] == "classical" and not record["learned"] and record["queue"] == "cpu"
    assert (record["params"], record["input_size"]) == (entry.params, entry.input_size) == (0, None)
    assert record["weights"] == "none" and record["weights_available"] and not record["sync_diff"]


def test_an_experiment_with_the_plugin_runs_to_results(api, labelled_dataset, gradient_plugin):
    body = {"dataset": labelled_dataset.pk, "detectors": [gradient_plugin, "absdiff"], "threshold": 0.3}
    created = api.post("/api/v1/experiments/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["detectors"] == [gradient_plugin, "absdiff"]
    started = api.post(f"/api/v1/experiments/{created.json()['id']}/runs/")
    assert started.status_code == 202, started.content
    run = finish_run_in_process(Run.objects.get(pk=started.json()["id"]))
    assert run.state == RunState.SUCCEEDED, run.error
    results = Result.objects.filter(run=run, detector=gradient_plugin)
    assert results.count() == labelled_dataset.pairs.count()
    assert all(r.iou is not None for r in results)
    listed = api.get(f"/api/v1/runs/{run.pk}/results/", {"detector": gradient_plugin}).json()["results"]
    assert len(listed) == labelled_dataset.pairs.count()
    board = api.get(f"/api/v1/runs/{run.pk}/leaderboard/").json()
    assert {row["detector"] for row in board["rows"]} == {gradient_plugin, "absdiff"}


def test_without_the_plugin_the_name_is_refused(api, labelled_dataset):
    body = {"dataset": labelled_dataset.pk, "detectors": ["gradient-diff"]}
    response = api.post("/api/v1/experiments/", body, format="json")
    assert response.status_code == 422 and "detectors" in response.json()["error"]["fields"]
