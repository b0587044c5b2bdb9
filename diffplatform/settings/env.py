"""Reading configuration from the environment, failing loudly on bad values."""

from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

SUPPORTED_DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "sqlite"}
SUPPORTED_REDIS_SCHEMES = {"redis", "rediss"}


def database_from_env(default_sqlite_path):
    """`DATABASE_URL` if set (PostgreSQL or SQLite), else a SQLite file."""
    url = env.str("DATABASE_URL", default="")
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite_path), "OPTIONS": sqlite_options()}
    scheme = urlparse(url).scheme
    if scheme not in SUPPORTED_DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL has scheme {scheme!r}; use postgres://user@host:5432/db or sqlite:///path"
        )
    config = env.db_url_config(url)
    config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    if config["ENGINE"].endswith("sqlite3"):
        config["OPTIONS"] = {**sqlite_options(), **config.get("OPTIONS", {})}
    return config


def sqlite_options() -> dict:
    """SQLite shared by the web server and workers: readers never wait for a writer (WAL), a writer
    takes its lock when its transaction begins (IMMEDIATE, so no deadlock upgrading a read lock)
    and waits up to `SQLITE_BUSY_TIMEOUT_S` for another writer instead of failing with
    "database is locked"."""
    return {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        "transaction_mode": "IMMEDIATE",
        "timeout": positive_int("SQLITE_BUSY_TIMEOUT_S", 20),
    }


def visibility_timeout(hard_time_limit_s: int, margin_s: int = 15 * 60) -> int:
    """How long the broker waits for an unacknowledged task before handing it to another worker.

    It must exceed the hard time limit, else a task still running is handed out a second time.
    `CELERY_VISIBILITY_TIMEOUT` may raise it; a value not above the time limit is refused."""
    value = positive_int("CELERY_VISIBILITY_TIMEOUT", hard_time_limit_s + margin_s)
    if value <= hard_time_limit_s:
        raise ImproperlyConfigured(
            f"CELERY_VISIBILITY_TIMEOUT is {value} s, not above the task hard time limit "
            f"(CELERY_TASK_TIME_LIMIT = {hard_time_limit_s} s): a task still running would be handed out "
            f"again. Set it above {hard_time_limit_s} (default: the time limit + {margin_s} s) or unset it."
        )
    return value


def redis_url_from_env():
    """`REDIS_URL` if set and valid, else None (the embedded Redis is used)."""
    url = env.str("REDIS_URL", default="")
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in SUPPORTED_REDIS_SCHEMES or not parsed.hostname:
        raise ImproperlyConfigured(f"REDIS_URL {url!r} is not a redis:// URL; use redis://host:6379/<db index>")
    return url


def positive_int(name, default):
    value = env.int(name, default=default)
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive integer, got {value}")
    return value
