"""`/healthz/` checks the database, Redis, the broker and live workers per queue: 200 when all
answer, 503 naming what failed otherwise, never 500. Anyone sees ok / not ok per check; only staff
(a session or a staff user's token) see the detail (issue 26, case 7: no worker host names, no
exception text for strangers)."""

import pytest
from django.db import connections
from rest_framework.authtoken.models import Token

from diffplatform import health
from diffplatform.embedded_redis import ensure_embedded_redis, stop_embedded_redis
from tests.live_services import celery_worker, celery_workers, free_port, service_env  # noqa: F401


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture(autouse=True)
def fresh_health(settings):
    settings.HEALTH_CACHE_S = 0
    health.reset()
    yield
    health.reset()


@pytest.mark.integration
def test_healthy_with_a_live_worker_on_each_queue(staff, settings, celery_worker):  # noqa: F811
    settings.HEALTH_WORKER_QUEUES = ["cpu", "gpu", "webhooks"]
    settings.HEALTH_WORKER_TIMEOUT_S = 2.0
    response = staff.get("/healthz/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert {name for name, detail in body["checks"].items() if detail["ok"]} == {
        "database",
        "redis",
        "broker",
        "workers",
    }
    assert all(body["checks"]["workers"]["queues"][queue] for queue in ("cpu", "gpu", "webhooks"))


@pytest.mark.django_db
def test_the_workers_section_names_queues_without_a_live_worker(staff, settings):
    settings.HEALTH_WORKER_QUEUES = ["cpu", "gpu"]
    response = staff.get("/healthz/")
    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["workers"]
    assert body["checks"]["workers"]["without_worker"] == ["cpu", "gpu"]
    assert "no live worker for queue(s): cpu, gpu" in body["checks"]["workers"]["error"]


@pytest.mark.django_db
def test_503_naming_redis_when_redis_is_down(staff, settings, tmp_path):
    client = staff
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    ensure_embedded_redis(tmp_path / "redis", port)
    try:
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
        settings.CHANNEL_LAYERS = {"default": {**settings.CHANNEL_LAYERS["default"],
                                               "CONFIG": {"hosts": [{"address": url}]}}}  # fmt: skip
        assert client.get("/healthz/").status_code == 200
    finally:
        stop_embedded_redis(port)
    health.reset()
    response = client.get("/healthz/")
    body = response.json()
    assert response.status_code == 503
    assert "redis" in body["failed"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_a_check_that_raises_is_a_503_never_a_500(staff, monkeypatch):
    client = staff

    def broken():
        raise RuntimeError("database on fire")

    monkeypatch.setattr(health, "check_database", broken)
    response = client.get("/healthz/")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert "database on fire" in response.json()["checks"]["database"]["error"]


@pytest.mark.django_db
def test_the_answer_is_cached_for_a_few_seconds(client, settings, monkeypatch):
    settings.HEALTH_CACHE_S = 60
    calls = []
    real = health.run_checks
    monkeypatch.setattr(health, "run_checks", lambda: calls.append(1) or real())
    client.get("/healthz/")
    client.get("/healthz/")
    assert len(calls) == 1


def secret_words_in(body) -> list[str]:
    text = str(body)
    return [word for word in ("on fire", "Error", "ms", "vendor", "queues", "@", "without_worker") if word in text]


@pytest.mark.django_db
def test_strangers_and_ordinary_users_see_only_ok_per_check(client, user, settings, monkeypatch):
    settings.HEALTH_WORKER_QUEUES = ["cpu"]

    def broken():
        raise RuntimeError("database on fire at 10.0.0.5:5432")

    monkeypatch.setattr(health, "check_database", broken)
    Token.objects.create(user=user)
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Token {user.auth_token.key}"}, {"HTTP_AUTHORIZATION": "Token nope"}):
        response = client.get("/healthz/", **headers)
        body = response.json()
        assert response.status_code == 503 and body["status"] == "unavailable"
        assert body["failed"] == ["database", "workers"]
        assert body["checks"] == {"database": {"ok": False}, "redis": {"ok": True}, "broker": {"ok": True},
                                  "workers": {"ok": False}}  # fmt: skip
        assert secret_words_in(body) == []
    client.force_login(user)
    assert secret_words_in(client.get("/healthz/").json()) == []


@pytest.mark.django_db
def test_staff_see_the_detail_with_a_session_or_a_token(client, staff_user, settings):
    settings.HEALTH_WORKER_QUEUES = ["cpu"]
    token = Token.objects.create(user=staff_user)
    body = client.get("/healthz/", HTTP_AUTHORIZATION=f"Token {token.key}").json()
    assert body["checks"]["workers"]["without_worker"] == ["cpu"] and body["checks"]["database"]["vendor"]
    client.force_login(staff_user)
    assert "no live worker for queue(s): cpu" in client.get("/healthz/").json()["checks"]["workers"]["error"]


@pytest.mark.django_db
def test_the_public_answer_stands_when_the_database_is_down(client, staff_user, monkeypatch):
    """Telling staff apart reads the session from the database; with it down the answer is still a 503."""
    client.force_login(staff_user)

    def down(*args, **kwargs):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(connections["default"], "cursor", down)
    response = client.get("/healthz/")
    assert response.status_code == 503 and response.json()["checks"]["database"] == {"ok": False}
