"""`/healthz/` checks the database, Redis, the broker and live workers per queue: 200 with detail
when all answer, 503 naming what failed otherwise, never 500."""

import pytest

from diffplatform import health
from diffplatform.embedded_redis import ensure_embedded_redis, stop_embedded_redis
from tests.live_services import celery_worker, celery_workers, free_port, service_env  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_health(settings):
    settings.HEALTH_CACHE_S = 0
    health.reset()
    yield
    health.reset()


@pytest.mark.integration
def test_healthy_with_a_live_worker_on_each_queue(client, settings, celery_worker):  # noqa: F811
    settings.HEALTH_WORKER_QUEUES = ["cpu", "gpu"]
    settings.HEALTH_WORKER_TIMEOUT_S = 2.0
    response = client.get("/healthz/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert {name for name, detail in body["checks"].items() if detail["ok"]} == {
        "database",
        "redis",
        "broker",
        "workers",
    }
    assert body["checks"]["workers"]["queues"]["cpu"] and body["checks"]["workers"]["queues"]["gpu"]


@pytest.mark.django_db
def test_the_workers_section_names_queues_without_a_live_worker(client, settings):
    settings.HEALTH_WORKER_QUEUES = ["cpu", "gpu"]
    response = client.get("/healthz/")
    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["workers"]
    assert body["checks"]["workers"]["without_worker"] == ["cpu", "gpu"]
    assert "no live worker for queue(s): cpu, gpu" in body["checks"]["workers"]["error"]


@pytest.mark.django_db
def test_503_naming_redis_when_redis_is_down(client, settings, tmp_path):
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
def test_a_check_that_raises_is_a_503_never_a_500(client, monkeypatch):
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
