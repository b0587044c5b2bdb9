"""Test settings: the same services as production (real Redis, real database), fast hashing."""

import os

# The embedded Redis keeps tests in a database index of their own (the app uses 0).
os.environ.setdefault("EMBEDDED_REDIS_DB", "1")
# Each test session (and the worker and server processes it starts) uses keys of its own, so
# sessions side by side never take each other's tasks or events.
os.environ.setdefault("DIFFPLATFORM_KEY_NAMESPACE", f"diffplatform-test-{os.getpid()}")

# Tests deliberately use a visibility timeout far below the time limit (their tasks take seconds, and
# the SIGKILL tests need abandoned tasks back quickly); base settings would refuse it, so they are
# read without it and it is applied below.
_visibility_env = os.environ.pop("CELERY_VISIBILITY_TIMEOUT", None)
try:
    from diffplatform.settings.base import *  # noqa: F403
    from diffplatform.settings.base import DATABASES, VAR_DIR
    from diffplatform.settings.env import env
finally:
    if _visibility_env is not None:
        os.environ["CELERY_VISIBILITY_TIMEOUT"] = _visibility_env

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="test-only-not-secret")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so that worker and server processes started by tests see the same rows.
    # One file per test session, so that sessions running side by side never share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
WHITENOISE_USE_FINDERS = True
# Workers started by tests get their unacknowledged tasks back quickly after a SIGKILL.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=20),
    "unacked_restore_interval": 1,  # look for abandoned tasks every second (production: every 100 s)
    "unacked_restore_throttle": 1,
}

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Worker and server processes write at the same time as the tests: wait for locks.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30

# Each model-memory measurement is a fresh Python process importing torch (seconds): the tests of that
# figure switch it on (tests/runs/test_model_memory.py); elsewhere the column stays empty.
MODEL_MEMORY_PROBE = env.bool("MODEL_MEMORY_PROBE", default=False)

# Servers started by tests often run without workers; tests that check workers name the queues.
HEALTH_WORKER_QUEUES = env.list("HEALTH_WORKER_QUEUES", default=[])
