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
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite_path)}
    scheme = urlparse(url).scheme
    if scheme not in SUPPORTED_DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL has scheme {scheme!r}; use postgres://user@host:5432/db or sqlite:///path"
        )
    config = env.db_url_config(url)
    config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    return config


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
