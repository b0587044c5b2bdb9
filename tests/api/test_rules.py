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


def _request_text_fields(openapi):
    for schema_name, schema in openapi["components"]["schemas"].items():
        if schema_name.endswith("Request"):
            for field, prop in schema.get("properties", {}).items():
                if prop.get("type") == "string" and "format" not in prop and "enum" not in prop:
                    yield f"{schema_name}.{field}", prop


def test_a_blank_text_field_the_api_accepts_is_valid_in_the_schema(openapi):
    """drf-spectacular writes allow_blank as oneOf[string, blank string], which a blank value matches
    twice (so oneOf refuses it); the schema hook leaves one branch that admits it."""
    from jsonschema import Draft202012Validator

    checked = []
    for path, schema in _request_text_fields(openapi):
        assert "oneOf" not in schema, path
        if schema.get("minLength", 0) == 0:
            assert Draft202012Validator(schema).is_valid(""), path
            checked.append(path)
    assert "PairInputRequest.name" in checked and "ExperimentInputRequest.webhook_url" in checked


def test_a_text_longer_than_its_max_length_as_sent_is_refused(api, labelled_dataset, make_pair_bytes):
    """The schema's maxLength holds for the value as sent, surrounding spaces included (DRF would
    trim them first and take it)."""
    a, b, _ = make_pair_bytes()
    url = f"/api/v1/datasets/{labelled_dataset.pk}/pairs/"
    files = {"image_a": upload("a.png", a), "image_b": upload("b.png", b)}
    padded = "  " + "n" * 254  # 256 characters sent, 254 after trimming; the limit is 255
    response = api.post(url, {**files, "name": padded}, format="multipart")
    assert response.status_code == 400, response.content
    assert "at most 255 characters" in str(error_of(response))
    assert not labelled_dataset.pairs.filter(name="n" * 254).exists()
    files = {"image_a": upload("a.png", a), "image_b": upload("b.png", b)}
    response = api.post(url, {**files, "name": "  " + "n" * 253}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "n" * 253
    experiment = api.post("/api/v1/experiments/", {"dataset": labelled_dataset.pk, "detectors": ["absdiff"],
                                                   "name": " " + "e" * 200}, format="json")  # fmt: skip
    assert experiment.status_code == 400, experiment.content
    assert not Experiment.objects.exists()
