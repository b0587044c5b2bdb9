"""Tokens, sessions, throttling and the error shape of unknown paths."""

import pytest
from rest_framework.test import APIClient

from tests.api.test_datasets import error_of
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_token_is_exchanged_for_the_password_and_works(user):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    again = client.post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert again.json()["token"] == token
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/datasets/").status_code == 200


def test_a_wrong_password_gets_no_token(user):
    response = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": "nope"}, format="json")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Token")
    assert "credentials" in error_of(response)["fields"]["password"][0]


def test_a_bad_token_answers_401_with_the_scheme(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get("/api/v1/detectors/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "authentication_failed"


def test_a_browser_session_works_and_needs_csrf_for_writes(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/v1/detectors/").status_code == 200
    response = client.post("/api/v1/datasets/", {"name": "x"}, format="json")
    assert response.status_code == 403 and "CSRF" in error_of(response)["message"]


def test_too_many_requests_answer_429_with_retry_after(api, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "user": "3/minute"},
    }
    statuses = [api.get("/api/v1/detectors/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get("/api/v1/detectors/")
    assert int(response["Retry-After"]) > 0 and error_of(response)["code"] == "throttled"


def test_the_token_endpoint_is_throttled_on_its_own_scope(user, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "2/minute"},
    }
    client = APIClient()
    body = {"username": user.username, "password": "guess"}
    statuses = [client.post("/api/v1/auth/token/", body, format="json").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_unknown_api_paths_and_ids_answer_json_404(api):
    for path in ("/api/v1/nothing/", "/api/v1/runs/-1/", "/api/v1/runs/99999999999999999999/", "/api/v1/runs/0/"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"
