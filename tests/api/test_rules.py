"""One rule each for thresholds, input sizes and result orderings, in the API and its schema."""

import pytest

from experiments.models import BatchJob, Experiment, TrainingJob
from experiments.runs.selectors import FILTERABLE_METRICS, RESULT_ORDERINGS
from experiments.runs.validation import INPUT_SIZE_MAX, INPUT_SIZE_MIN, THRESHOLD_MAX, THRESHOLD_MIN
from tests.api.conftest import upload
from tests.api.test_datasets import error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def openapi(client):
    return client.get("/api/schema/?format=json").json()


def test_the_schema_states_the_validation_bounds(openapi):
    schemas = openapi["components"]["schemas"]
    for name in ("ExperimentInputRequest", "BatchInputRequest", "DiffInputRequest"):
        threshold = schemas[name]["properties"]["threshold"]
        assert (threshold["minimum"], threshold["maximum"]) == (THRESHOLD_MIN, THRESHOLD_MAX), name
        assert threshold["exclusiveMinimum"] and threshold["exclusiveMaximum"], name
    for name, field in (("ExperimentInputRequest", "input_size"), ("TrainingInputRequest", "size")):
        size = schemas[name]["properties"][field]
        assert (size["minimum"], size["maximum"]) == (INPUT_SIZE_MIN, INPUT_SIZE_MAX), name
        assert "exclusiveMinimum" not in size


def test_the_result_filters_are_the_selectors_lists(openapi):
    parameters = {p["name"]: p for p in openapi["paths"]["/api/v1/runs/{id}/results/"]["get"]["parameters"]}
    assert parameters["ordering"]["schema"]["enum"] == sorted(RESULT_ORDERINGS)
    ranges = {name for name in parameters if name.endswith(("_min", "_max"))}
    assert ranges == {f"{m}_{end}" for m in FILTERABLE_METRICS for end in ("min", "max")}


@pytest.mark.parametrize("threshold", [THRESHOLD_MIN, THRESHOLD_MAX, 1.5, -0.1])
def test_a_threshold_outside_the_open_interval_is_refused_everywhere(api, labelled_dataset, make_pair_bytes, threshold):
    experiment = api.post(
        "/api/v1/experiments/",
        {"dataset": labelled_dataset.pk, "detectors": ["absdiff"], "threshold": threshold},
        format="json",
    )
    a, b, _ = make_pair_bytes()
    loose = {"image_a": [upload("x_A.png", a)], "image_b": [upload("x_B.png", b)]}
    batch = api.post("/api/v1/batches/", {**loose, "detectors": ["absdiff"], "threshold": threshold})
    diff = api.post(
        "/api/v1/diff/",
        {"image_a": upload("a.png", a), "image_b": upload("b.png", b), "detector": "absdiff", "threshold": threshold},
    )
    messages = set()
    for response in (experiment, batch, diff):
        assert response.status_code == 400, response.content
        messages.add(error_of(response)["fields"]["threshold"][0])
    assert len(messages) == 1 and "exclusive" in messages.pop()
    assert not Experiment.objects.exists() and not BatchJob.objects.exists()


def test_a_threshold_just_inside_the_bounds_is_accepted(api, make_pair_bytes):
    a, b, _ = make_pair_bytes()
    for threshold in (0.001, 0.999):
        response = api.post(
            "/api/v1/diff/",
            {
                "image_a": upload("a.png", a),
                "image_b": upload("b.png", b),
                "detector": "absdiff",
                "threshold": threshold,
            },
        )
        assert response.status_code == 200, response.content


@pytest.mark.parametrize("size", [INPUT_SIZE_MIN - 1, INPUT_SIZE_MAX + 1])
def test_an_input_size_out_of_range_is_refused_with_one_message(api, labelled_dataset, size):
    experiment = api.post(
        "/api/v1/experiments/",
        {"dataset": labelled_dataset.pk, "detectors": ["siamese-unet"], "input_size": size},
        format="json",
    )
    training = api.post(
        "/api/v1/training/", {"dataset": labelled_dataset.pk, "detector": "siamese-unet", "size": size}, format="json"
    )
    assert experiment.status_code == training.status_code == 400
    experiment_message = error_of(experiment)["fields"]["input_size"][0]
    assert experiment_message == error_of(training)["fields"]["size"][0]
    assert str(INPUT_SIZE_MIN) in experiment_message and str(INPUT_SIZE_MAX) in experiment_message
    assert not Experiment.objects.exists() and not TrainingJob.objects.exists()
