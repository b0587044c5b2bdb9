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
    "/api/v1/experiments/",
    "/api/v1/experiments/{id}/",
    "/api/v1/experiments/{id}/runs/",
    "/api/v1/runs/{id}/",
    "/api/v1/runs/{id}/cancel/",
    "/api/v1/runs/{id}/retry/",
    "/api/v1/runs/{id}/clone/",
    "/api/v1/runs/{id}/ws-ticket/",
    "/api/v1/runs/{id}/leaderboard/",
    "/api/v1/runs/{id}/results/",
    "/api/v1/checkpoints/",
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
