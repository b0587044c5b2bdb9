"""The OpenAPI schema: served, complete, and honoured by the API (schemathesis against the live app)."""

import pytest
import schemathesis
from django.contrib.staticfiles import finders
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import token_client

EXPECTED_PATHS = {
    "/api/v1/auth/token/",
    "/api/v1/detectors/",
    "/api/v1/datasets/",
    "/api/v1/datasets/{id}/",
    "/api/v1/datasets/{id}/pairs/",
    "/api/v1/datasets/{id}/import/",
    "/api/v1/datasets/{id}/leakage/",
    "/api/v1/datasets/{id}/predictions/",
    "/api/v1/datasets/{id}/predictions/{set_pk}/",
    "/api/v1/experiments/",
    "/api/v1/experiments/{id}/",
    "/api/v1/experiments/{id}/runs/",
    "/api/v1/runs/",
    "/api/v1/compare/",
    "/api/v1/benchmarks/",
    "/api/v1/runs/{id}/",
    "/api/v1/runs/{id}/cancel/",
    "/api/v1/runs/{id}/retry/",
    "/api/v1/runs/{id}/clone/",
    "/api/v1/runs/{id}/ws-ticket/",
    "/api/v1/runs/{id}/leaderboard/",
    "/api/v1/runs/{id}/thesis-table/",
    "/api/v1/runs/{id}/report.md",
    "/api/v1/runs/{id}/report.tex",
    "/api/v1/runs/{id}/report.html",
    "/api/v1/runs/{id}/charts/{name}",
    "/api/v1/webhooks/secret/",
    "/api/v1/webhooks/deliveries/",
    "/api/v1/runs/{id}/results/",
    "/api/v1/runs/{id}/leakage/",
    "/api/v1/checkpoints/",
    "/api/v1/checkpoints/{id}/claims/",
    "/api/v1/models/",
    "/api/v1/models/{id}/",
    "/api/v1/models/{id}/claims/",
    "/api/v1/datasets/{id}/predictions/{set_pk}/claims/",
    "/api/v1/training/",
    "/api/v1/training/{id}/",
    "/api/v1/training/{id}/cancel/",
    "/api/v1/batches/",
    "/api/v1/batches/{id}/",
    "/api/v1/batches/{id}/archive/",
    "/api/v1/diff/",
    "/api/v1/media/{key}",
}


@pytest.fixture
def openapi(db, client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_lists_every_endpoint_with_its_errors(openapi):
    assert set(openapi["paths"]) == EXPECTED_PATHS
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            codes = set(operation["responses"])
            assert "429" in codes, (path, method)
            if path != "/api/v1/auth/token/":
                assert "401" in codes, (path, method)
            if "{id}" in path:
                assert "404" in codes, (path, method)
            if "requestBody" in operation:
                assert "415" in codes, (path, method)
            if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
                assert "413" in codes, (path, method)
    error = openapi["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"].endswith("/ErrorDetail")
    batch = openapi["paths"]["/api/v1/batches/"]["post"]
    assert {"200", "202", "409", "422"} <= set(batch["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in batch["parameters"])


def test_swagger_ui_is_served_with_local_assets(db, client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def load_live_schema():
    """The schema as the running app serves it (`/api/schema/`), called through WSGI in-process."""
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


# Loaded when the module is collected (schemathesis' lazy `from_fixture` does not run on pytest 9).
schema = load_live_schema()


@pytest.fixture
def keep_test_transaction(db):
    """As Django's test client does: no closing of connections around each in-process request,
    which would end the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token_header(user, labelled_dataset):
    """A user with a dataset, so that ids in generated requests sometimes hit real objects."""
    client = token_client(user)
    return client._credentials["HTTP_AUTHORIZATION"]


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_honours_its_schema(case, token_header, keep_test_transaction):
    case.call_and_validate(
        headers={"Authorization": token_header},
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )


@pytest.mark.parametrize("page_size", ["null", "0", "-1", "201", "1.5", "", "9" * 30])
def test_a_page_size_outside_the_schema_is_refused_with_400(db, user, page_size):
    response = token_client(user).get(f"/api/v1/datasets/?page_size={page_size}")
    assert response.status_code == 400, response.content
    assert "page_size" in response.json()["error"]["fields"]


def test_a_page_size_inside_the_schema_is_used(db, user, labelled_dataset):
    from experiments.datasets import services as dataset_services

    dataset_services.dataset_create(owner=user, name="second")
    first = token_client(user).get("/api/v1/datasets/?page_size=1").json()
    assert len(first["results"]) == 1 and first["next"]
    assert len(token_client(user).get("/api/v1/datasets/?page_size=200").json()["results"]) == 2


@pytest.mark.parametrize("cursor", ["junk", "cD0yMDI2LWJhZA==", "%C3%B3"])
def test_a_cursor_the_api_did_not_give_out_answers_404(db, user, labelled_dataset, cursor):
    response = token_client(user).get(f"/api/v1/datasets/?cursor={cursor}")
    assert response.status_code == 404, response.content
    assert "cursor" in response.json()["error"]["message"]


def test_paged_lists_declare_their_400_and_404(openapi):
    for path, operations in openapi["paths"].items():
        for operation in operations.values():
            if any(p["name"] == "page_size" for p in operation.get("parameters", [])):
                assert {"400", "404"} <= set(operation["responses"]), path
