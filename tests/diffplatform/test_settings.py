import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from diffplatform.settings import env as env_module

ROOT = Path(__file__).resolve().parents[2]


def run_django(settings_module, *args, extra_env=None):
    dropped = ("SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")  # the browser tests set the last
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({"DJANGO_SETTINGS_MODULE": settings_module, **(extra_env or {})})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_it_rejects_a_database_url_with_an_unknown_scheme(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mongodb://localhost/x")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env_module.database_from_env("/tmp/x.sqlite3")


def test_it_reads_a_postgres_database_url(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    config = env_module.database_from_env("/tmp/x.sqlite3")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["NAME"] == "test"


def test_it_falls_back_to_sqlite_without_database_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert env_module.database_from_env("/tmp/x.sqlite3")["ENGINE"].endswith("sqlite3")


def test_it_rejects_a_redis_url_that_is_not_redis(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "http://localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        env_module.redis_url_from_env()


def test_it_rejects_non_positive_limits(monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_MB", "0")
    with pytest.raises(ImproperlyConfigured, match="MAX_UPLOAD_MB"):
        env_module.positive_int("MAX_UPLOAD_MB", 50)


def test_debug_is_off_outside_local_settings(settings):
    assert settings.DEBUG is False


def test_production_refuses_to_start_without_secret_key():
    result = run_django(
        "diffplatform.settings.production", "check", extra_env={"REDIS_URL": "redis://127.0.0.1:6379/15"}
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_the_embedded_redis():
    env = {"SECRET_KEY": secrets.token_urlsafe(64)}
    result = run_django("diffplatform.settings.production", "check", extra_env=env | {"REDIS_URL": ""})
    assert result.returncode != 0
    assert "REDIS_URL must be set in production" in result.stderr


def test_check_deploy_is_clean_under_production_settings():
    env = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "ALLOWED_HOSTS": "diff.example.org",
    }
    result = run_django(
        "diffplatform.settings.production", "check", "--deploy", "--fail-level", "WARNING", extra_env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_migrations_match_the_models():
    result = run_django("diffplatform.settings.test", "makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
