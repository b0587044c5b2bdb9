"""`GET /healthz/`: whether this deployment can do its work, check by check.

Checks: the database (`SELECT 1`), Redis (the cache and the channel layer), the Celery broker
(a connection and a ping), and live workers per queue in `HEALTH_WORKER_QUEUES` (a broadcast
`inspect().active_queues()` that waits `HEALTH_WORKER_TIMEOUT_S`). 200 with every check's detail
when all pass, 503 naming the failed checks otherwise; never 500 (a check that raises is a failed
check). The answer is kept `HEALTH_CACHE_S` seconds in the process, so probes cost at most one
round of checks per interval.

Anyone gets the status and whether each check passed; only staff (a session, or the token of a
staff user) get the detail: worker names, timings and error text say too much about the inside.
"""

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)
_cache = {"at": None, "answer": None}
_lock = threading.Lock()


def _timed(check):
    started = time.monotonic()
    try:
        detail = check()
    except Exception as exc:  # noqa: BLE001 - any error is a failed check, named in the answer
        detail = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    detail["ms"] = round((time.monotonic() - started) * 1000, 1)
    return detail


def check_database() -> dict:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connections["default"].vendor}


def _redis_urls() -> list[str]:
    urls = [settings.CACHES["default"].get("LOCATION") or settings.REDIS_URL]
    for host in settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {}).get("hosts", []):
        urls.append(host["address"] if isinstance(host, dict) else host)
    return list(dict.fromkeys(url for url in urls if isinstance(url, str)))


def check_redis() -> dict:
    """The Redis of the cache (result cache, throttles) and of the channel layer (live updates)."""
    timeout = settings.HEALTH_CHECK_TIMEOUT_S
    for url in _redis_urls():
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                      retry=Retry(NoBackoff(), 0))  # fmt: skip
        try:
            client.ping()
        finally:
            client.close()
    return {"ok": True, "used_by": ["cache", "channel layer"]}


def check_broker() -> dict:
    from diffplatform.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2,
                               timeout=settings.HEALTH_CHECK_TIMEOUT_S)  # fmt: skip
        conn.default_channel.client.ping()
    return {"ok": True, "transport": conn.transport_cls}


def check_workers() -> dict:
    """Which workers consume each queue in `HEALTH_WORKER_QUEUES`; failed when a queue has none."""
    from diffplatform.celery import app

    wanted = list(settings.HEALTH_WORKER_QUEUES)
    replies = app.control.inspect(timeout=settings.HEALTH_WORKER_TIMEOUT_S).active_queues() or {}
    queues = {
        name: sorted(
            worker for worker, consumed in replies.items() if any(q.get("name") == name for q in consumed or [])
        )
        for name in wanted
    }
    missing = [name for name in wanted if not queues[name]]
    detail = {"ok": not missing, "queues": queues, "without_worker": missing}
    if missing:
        detail["error"] = f"no live worker for queue(s): {', '.join(missing)}"
    return detail


def run_checks() -> dict:
    checks = {"database": _timed(check_database), "redis": _timed(check_redis), "broker": _timed(check_broker)}
    if not settings.HEALTH_WORKER_QUEUES:
        checks["workers"] = {"ok": True, "skipped": "HEALTH_WORKER_QUEUES is empty"}
    elif checks["broker"]["ok"]:
        checks["workers"] = _timed(check_workers)
    else:
        wanted = list(settings.HEALTH_WORKER_QUEUES)
        checks["workers"] = {"ok": False, "queues": dict.fromkeys(wanted), "without_worker": wanted,
                             "error": "not checked: the broker is unavailable"}  # fmt: skip
    failed = [name for name, detail in checks.items() if not detail["ok"]]
    return {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}


def health() -> dict:
    """The cached answer, or a fresh round of checks when it is older than `HEALTH_CACHE_S`."""
    with _lock:
        now = time.monotonic()
        if _cache["at"] is None or now - _cache["at"] >= settings.HEALTH_CACHE_S:
            _cache["answer"] = run_checks()
            _cache["at"] = time.monotonic()
        return _cache["answer"]


def reset() -> None:
    with _lock:
        _cache["at"] = None


def _is_staff(request) -> bool:
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.exceptions import AuthenticationFailed

    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.is_staff
    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return False
    return bool(found and found[0].is_staff)


def public(answer: dict) -> dict:
    """What anyone may see: the status and, per check, whether it passed."""
    checks = {name: {"ok": detail["ok"]} for name, detail in answer["checks"].items()}
    return {"status": answer["status"], "failed": answer["failed"], "checks": checks}


def healthz(request):
    try:
        answer = health()
    except Exception as exc:  # never a 500: the probe must say what is wrong
        logger.exception("health check failed")
        answer = {"status": "unavailable", "failed": ["health"], "checks": {"health": {"ok": False, "error": str(exc)}}}
    try:
        staff = _is_staff(request)
    except Exception:  # noqa: BLE001 - the database may be what is down: the public answer then
        staff = False
    shown = answer if staff else public(answer)
    response = JsonResponse(shown, status=200 if answer["status"] == "ok" else 503)
    response["Cache-Control"] = "no-store"
    return response
