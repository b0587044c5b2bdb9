"""Whether Redis (broker, channel layer, cache) answers, for banners and response headers.

With Redis down the platform keeps serving stored results from the database; pages and API
responses say that live updates and new runs are waiting. The answer is cached in the process
for a few seconds so a dead Redis costs one short connect attempt per interval, not per request.
"""

import time

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

CHECK_EVERY_S = 5.0
_last = {"at": 0.0, "ok": True}


def redis_available() -> bool:
    now = time.monotonic()
    if now - _last["at"] >= CHECK_EVERY_S:
        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5,
                                          retry=Retry(NoBackoff(), 0))  # fmt: skip
            _last["ok"] = bool(client.ping())
        except (redis.exceptions.RedisError, OSError):
            _last["ok"] = False
        _last["at"] = now
    return _last["ok"]


DEGRADED_MESSAGE = "Redis is unavailable: stored results are served, live updates and new runs are waiting."


def context(request) -> dict:
    return {"service_degraded_message": "" if redis_available() else DEGRADED_MESSAGE}


class ServiceStatusMiddleware:
    """Adds `X-Service-Degraded` to every response while Redis is down."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not redis_available():
            response["X-Service-Degraded"] = "redis-unavailable; live updates and new runs are waiting"
        return response
