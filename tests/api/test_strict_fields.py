"""A strict API: fields and query parameters an operation does not declare are refused with a 400 that
names them (and suggests the closest known one), and nothing is written, stored or queued.

The operations come from the OpenAPI schema the app serves, so a new endpoint is covered when it is added.
"""

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.utils.crypto import get_random_string
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from experiments import storage
from experiments.api import strict
from experiments.models import ModelCheckpoint, PredictionSet, TrainingJob, UploadedModel
from tests.api.conftest import upload
from tests.api.test_datasets import error_of

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in sorted(SCHEMA["paths"].items())
    for method, operation in operations.items()
    if method in ("get", "post", "put", "patch", "delete")
]
WRITES = [op for op in OPERATIONS if op[0] != "GET"]
BODIES = [op for op in WRITES if "requestBody" in op[2]]
BODYLESS = [op for op in WRITES if "requestBody" not in op[2]]
UNKNOWN = "zz_not_a_field"


def op_id(op) -> str:
    return f"{op[0]} {op[1]}"


@pytest.fixture
def world(user, finished_run, labelled_dataset, monkeypatch):
    """One of each object a write can address, so every request reaches its view."""
    monkeypatch.setattr("experiments.outbox.dispatch", lambda model, object_id: True)
    objects = {
        "datasets": labelled_dataset.pk,
        "experiments": finished_run.experiment_id,
        "runs": finished_run.pk,
        "training": TrainingJob.objects.create(owner=user, detector="siamese-unet", dataset=labelled_dataset).pk,
        "models": UploadedModel.objects.create(
            owner=user, name="m", file_key="k", sha256="0" * 64, size_bytes=1, mean=[0, 0, 0], std=[1, 1, 1],
            inputs="two", output="probability", state="rejected", reason="test",
        ).pk,
        "set_pk": PredictionSet.objects.create(owner=user, dataset=labelled_dataset, name="p", kind="mask").pk,
        "batches": 1,
        "media": "none",
        "charts": "pr.svg",
    }  # fmt: skip
    objects["checkpoints"] = ModelCheckpoint.objects.create(
        owner=user, detector="siamese-unet", file_key="k", sha256="0"
    ).pk
    return objects


def url_of(path: str, objects: dict) -> str:
    """The path with each parameter filled by the object its first segment names (`/runs/{id}/`: a run)."""
    if "{id}" in path:
        path = path.replace("{id}", str(objects[path.removeprefix("/api/v1/").split("/")[0]]))
    return (
        path.replace("{set_pk}", str(objects["set_pk"]))
        .replace("{key}", objects["media"])
        .replace("{name}", objects["charts"])
    )


def everything() -> dict:
    """Every row of every model, and every stored file: what a refused request must leave as it was."""
    rows = {model._meta.label: sorted(map(repr, model.objects.values_list())) for model in apps.get_models()}
    return {"rows": rows, "files": sorted(storage.list_all_keys())}


@pytest.fixture
def unchanged(world, django_capture_on_commit_callbacks):
    """Asserts, after the test's requests, that nothing was written, stored or queued."""
    before = everything()
    with django_capture_on_commit_callbacks() as callbacks:
        yield
    assert callbacks == [], "work was queued"
    after = everything()
    assert after["files"] == before["files"]
    changed = [label for label, rows in after["rows"].items() if rows != before["rows"][label]]
    assert changed == [], changed


def refused_naming(response, name: str, what: str = "field") -> str:
    assert response.status_code == 400, (response.status_code, response.content[:500])
    error = error_of(response)
    assert set(error["fields"]) == {name}, error
    message = error["fields"][name][0]
    assert f"Unknown {what} {name!r}" in message and name in error["message"]
    return message


def test_the_schema_has_write_operations_of_each_kind():
    """The discovery below covers JSON, form and multipart bodies and bodyless writes."""
    kinds = {kind for op in BODIES for kind in op[2]["requestBody"]["content"]}
    assert {"application/json", "multipart/form-data"} <= kinds
    assert {"POST", "DELETE"} <= {op[0] for op in BODYLESS} and len(BODIES) >= 10


@pytest.mark.parametrize("op", BODIES, ids=op_id)
def test_every_write_refuses_an_unknown_body_field(op, api, world, unchanged):
    method, path, operation = op
    kinds = operation["requestBody"]["content"]
    form = "application/json" not in kinds
    extra = {"format": "multipart"} if form else {"format": "json"}
    response = getattr(api, method.lower())(url_of(path, world), {UNKNOWN: "1"}, **extra)
    refused_naming(response, UNKNOWN)


@pytest.mark.parametrize("op", BODYLESS, ids=op_id)
def test_a_write_without_a_body_refuses_fields_sent_to_it(op, api, world, unchanged):
    method, path, _ = op
    response = getattr(api, method.lower())(url_of(path, world), {UNKNOWN: 1}, format="json")
    message = refused_naming(response, UNKNOWN)
    assert "takes no fields" in message


@pytest.mark.parametrize("op", BODYLESS, ids=op_id)
def test_a_write_without_a_body_refuses_any_body(op, api, world, unchanged):
    method, path, _ = op
    response = getattr(api, method.lower())(url_of(path, world), "treshold=0.3", content_type="text/plain")
    assert response.status_code == 400 and "takes no body" in error_of(response)["message"]


@pytest.mark.parametrize("op", WRITES, ids=op_id)
def test_every_write_refuses_an_unknown_query_parameter(op, api, world, unchanged):
    method, path, _ = op
    response = getattr(api, method.lower())(f"{url_of(path, world)}?{UNKNOWN}=1")
    refused_naming(response, UNKNOWN, "query parameter")


@pytest.mark.parametrize("op", [op for op in OPERATIONS if op[0] == "GET"], ids=op_id)
def test_every_read_refuses_an_unknown_query_parameter(op, api, world):
    response = api.get(f"{url_of(op[1], world)}?{UNKNOWN}=1")
    refused_naming(response, UNKNOWN, "query parameter")


def test_every_operation_declares_its_400():
    assert [op_id(op) for op in OPERATIONS if "400" not in op[2]["responses"]] == []


def test_request_bodies_forbid_additional_properties_in_the_schema():
    components = SCHEMA["components"]["schemas"]
    for method, path, operation in BODIES:
        for content in operation["requestBody"]["content"].values():
            name = content["schema"]["$ref"].rsplit("/", 1)[-1]
            assert components[name]["additionalProperties"] is False, (method, path, name)
    # an object of free keys (detector -> weights) keeps its own rule
    weights = components["ExperimentInputRequest"]["properties"]["detector_weights"]
    assert weights["additionalProperties"]["type"] == "string"


# --------------------------------------------------------------------------- whole requests
def experiment(dataset_id, **extra) -> dict:
    return {"dataset": dataset_id, "detectors": ["absdiff"], "name": "strict", **extra}


def test_a_mistyped_threshold_is_refused_with_the_field_it_meant(api, world, unchanged):
    response = api.post("/api/v1/experiments/", experiment(world["datasets"], treshold=0.3), format="json")
    message = refused_naming(response, "treshold")
    assert message == "Unknown field 'treshold'. Did you mean 'threshold'?"


def test_the_same_request_without_the_unknown_field_is_taken(api, world):
    response = api.post("/api/v1/experiments/", experiment(world["datasets"], threshold=0.3), format="json")
    assert response.status_code == 201 and response.json()["threshold"] == 0.3


def test_every_unknown_field_is_named_at_once(api, world, unchanged):
    body = experiment(world["datasets"], treshold=0.3, detector=["ssim"], colour="red")
    error = error_of(api.post("/api/v1/experiments/", body, format="json"))
    assert error["fields"]["detector"] == ["Unknown field 'detector'. Did you mean 'detectors'?"]
    assert error["fields"]["colour"][0].startswith("Unknown field 'colour'; known fields: align, ")
    assert set(error["fields"]) == {"treshold", "detector", "colour"}


def test_an_output_only_field_sent_in_a_write_is_refused(api, world, unchanged):
    body = experiment(world["datasets"], id=5, created_at="2026-01-01T00:00:00Z")
    assert set(error_of(api.post("/api/v1/experiments/", body, format="json"))["fields"]) == {"id", "created_at"}


def test_a_multipart_upload_refuses_an_unknown_form_field_and_stores_nothing(api, world, make_pair_bytes, unchanged):
    a, b, _ = make_pair_bytes(seed=5)
    files = {"image_a": upload("n_A.png", a), "image_b": upload("n_B.png", b), "categry": "roads"}
    response = api.post(f"/api/v1/datasets/{world['datasets']}/pairs/", files, format="multipart")
    assert refused_naming(response, "categry") == "Unknown field 'categry'. Did you mean 'category'?"


def test_a_multipart_upload_refuses_an_unknown_file_field(api, world, make_pair_bytes, unchanged):
    a, b, label = make_pair_bytes(seed=5)
    files = {"image_a": upload("n_A.png", a), "image_b": upload("n_B.png", b), "labels": upload("l.png", label)}
    response = api.post(f"/api/v1/datasets/{world['datasets']}/pairs/", files, format="multipart")
    assert refused_naming(response, "labels") == "Unknown field 'labels'. Did you mean 'label'?"


def test_the_same_upload_with_known_fields_is_taken(api, world, make_pair_bytes):
    a, b, label = make_pair_bytes(seed=5)
    files = {"image_a": upload("n_A.png", a), "image_b": upload("n_B.png", b), "label": upload("l.png", label)}
    response = api.post(f"/api/v1/datasets/{world['datasets']}/pairs/", {**files, "category": "roads"})
    assert response.status_code == 201 and response.json()["has_label"] is True


def test_a_session_form_may_carry_the_csrf_field(user):
    """Django's CSRF field is part of a session client's form, not an unknown input."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    response = client.post("/api/v1/datasets/", {"name": "by form", "csrfmiddlewaretoken": token})
    assert response.status_code == 201, response.content
    assert client.post("/api/v1/datasets/", {"name": "no token"}).status_code == 403
    rotated = client.post("/api/v1/webhooks/secret/?format=json", {"csrfmiddlewaretoken": token})  # no body fields
    assert rotated.status_code == 200, rotated.content


def test_a_query_parameter_of_a_write_is_checked_against_its_declared_ones(api, world, unchanged):
    response = api.post(f"/api/v1/datasets/{world['datasets']}/import/?dryrun=1", {}, format="multipart")
    assert refused_naming(response, "dryrun", "query parameter").endswith("Did you mean 'dry_run'?")


def test_a_list_refuses_a_mistyped_filter_instead_of_listing_everything(api, world):
    response = api.get(f"/api/v1/runs/{world['runs']}/results/?iou_minimum=0.5")
    assert refused_naming(response, "iou_minimum", "query parameter").endswith("Did you mean 'iou_min'?")
    assert api.get(f"/api/v1/runs/{world['runs']}/results/?iou_min=0.5&page_size=2&format=json").status_code == 200


def test_a_huge_body_of_unknown_fields_gets_a_bounded_answer(api, world, unchanged):
    body = {f"x{i}" * 50: i for i in range(5000)}
    error = error_of(api.post("/api/v1/experiments/", {**experiment(world["datasets"]), **body}, format="json"))
    assert len(error["fields"]) == strict.MAX_REPORTED
    assert all(len(key) <= strict.MAX_NAME for key in error["fields"])


# --------------------------------------------------------------------------- nested inputs
class Member(serializers.Serializer):
    name = serializers.CharField()
    weight = serializers.FloatField()


class Ensemble(serializers.Serializer):
    name = serializers.CharField()
    members = Member(many=True)
    lead = Member(required=False)
    by_role = serializers.DictField(child=Member(), required=False)
    id = serializers.IntegerField(read_only=True)


def nested_problems(data) -> dict:
    with pytest.raises(serializers.ValidationError) as refused:
        strict.fields_check(Ensemble(data=data))
    return refused.value.detail


def test_nested_inputs_are_strict_too():
    data = {
        "name": "e",
        "members": [{"name": "absdiff", "weight": 1}, {"name": "ssim", "wieght": 2}],
        "lead": {"name": "ssim", "weight": 1, "extra": 0},
        "by_role": {"main": {"nam": "x", "weight": 1}},
    }
    problems = nested_problems(data)
    assert problems == {
        "members[1].wieght": ["Unknown field 'wieght'. Did you mean 'weight'?"],
        "lead.extra": ["Unknown field 'extra'; known fields: name, weight."],
        "by_role.main.nam": ["Unknown field 'nam'. Did you mean 'name'?"],
    }


def test_a_read_only_field_is_refused_by_name():
    assert nested_problems({"name": "e", "members": [], "id": 3}) == {"id": ["Field 'id' is read-only; leave it out."]}


def test_known_nested_fields_pass_and_wrong_types_are_left_to_the_serializer():
    strict.fields_check(Ensemble(data={"name": "e", "members": [{"name": "a", "weight": 1}], "lead": None}))
    strict.fields_check(Ensemble(data={"name": "e", "members": "not a list", "by_role": [1]}))
