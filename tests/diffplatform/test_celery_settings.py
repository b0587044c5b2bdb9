import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from diffplatform.settings import env as env_module

ROOT = Path(__file__).resolve().parents[2]
HARD_LIMIT = 4 * 3600


def local_settings(**extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_SETTINGS"))}
    env.update(DJANGO_SETTINGS_MODULE="diffplatform.settings.local", **extra_env)
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "from diffplatform.celery import app; "
        "print(json.dumps([s.CELERY_TASK_TIME_LIMIT, s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], "
        "app.conf.worker_max_memory_per_child]))"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_visibility_timeout_derives_from_the_hard_time_limit(monkeypatch):
    monkeypatch.delenv("CELERY_VISIBILITY_TIMEOUT", raising=False)
    assert env_module.visibility_timeout(HARD_LIMIT) == HARD_LIMIT + 15 * 60
    assert env_module.visibility_timeout(600) > 600


@pytest.mark.parametrize("value", ["3600", str(HARD_LIMIT)])
def test_a_visibility_timeout_not_above_the_hard_time_limit_is_refused(monkeypatch, value):
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", value)
    with pytest.raises(ImproperlyConfigured, match="CELERY_VISIBILITY_TIMEOUT"):
        env_module.visibility_timeout(HARD_LIMIT)


def test_a_larger_visibility_timeout_is_kept(monkeypatch):
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", str(HARD_LIMIT + 1))
    assert env_module.visibility_timeout(HARD_LIMIT) == HARD_LIMIT + 1


def test_base_settings_give_the_worker_a_safe_visibility_timeout_and_a_memory_limit():
    result = local_settings()
    assert result.returncode == 0, result.stderr
    time_limit, visibility, max_memory_kib = json.loads(result.stdout.strip().splitlines()[-1])
    assert visibility > time_limit == HARD_LIMIT
    assert max_memory_kib == 4 * 1024 * 1024


def test_the_memory_limit_and_time_limit_follow_the_environment():
    result = local_settings(CELERY_WORKER_MAX_MEMORY_PER_CHILD="512000", CELERY_TASK_TIME_LIMIT="600")
    assert result.returncode == 0, result.stderr
    time_limit, visibility, max_memory_kib = json.loads(result.stdout.strip().splitlines()[-1])
    assert (time_limit, visibility, max_memory_kib) == (600, 600 + 15 * 60, 512000)


def test_settings_refuse_a_visibility_timeout_below_the_time_limit():
    result = local_settings(CELERY_VISIBILITY_TIMEOUT="3600")
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT is 3600 s, not above the task hard time limit" in result.stderr


def test_a_dead_workers_task_is_seen_within_two_minutes_by_default():
    from django.conf import settings

    assert settings.TASK_HEARTBEAT_S * 2 < settings.TASK_HEARTBEAT_TIMEOUT_S
    assert settings.TASK_HEARTBEAT_TIMEOUT_S + settings.TASK_STALE_CHECK_INTERVAL_S < 120
    assert settings.TASK_MAX_WORKER_DEATHS == 3


def test_settings_refuse_a_heartbeat_timeout_a_live_worker_could_miss():
    result = local_settings(TASK_HEARTBEAT_S="30", TASK_HEARTBEAT_TIMEOUT_S="45")
    assert result.returncode != 0
    assert "TASK_HEARTBEAT_TIMEOUT_S (45 s) must be more than twice TASK_HEARTBEAT_S (30 s" in result.stderr
