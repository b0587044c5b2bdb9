"""A limit on authentication attempts per client address, shared by every way in: the log-in and
sign-up pages, the admin's log-in and password pages and the token API (`API_THROTTLE_AUTH`, e.g.
``20/minute``; `experiments.api.throttling.AuthAttemptThrottle` applies it to the API).

The client address is `REMOTE_ADDR`, or, behind `TRUSTED_PROXY_COUNT` proxies that each append
the address they received from to `X-Forwarded-For`, the address that many hops from the right:
what a client writes into the header itself sits further left and is never read, so a fresh
header per request cannot escape the limit. Counters live in the default cache (Redis), so every
web process shares them; they are atomic increments over a sliding window (the current and the
previous fixed window, the latter weighted by how much of it the sliding one still covers).
"""

import ipaddress
import math
import time
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.shortcuts import render

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def client_address(request) -> str:
    """The address the request came from, as far as the trusted proxies in front of us say."""
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:
        return remote
    hop = hops[-min(trusted, len(hops))]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:  # only a misconfigured proxy writes this; fall back to the peer
        return remote


def auth_rate() -> tuple[int, int] | None:
    """(attempts, seconds) from `API_THROTTLE_AUTH`, read per call (tests and operators change it)."""
    from rest_framework.settings import api_settings

    rate = api_settings.DEFAULT_THROTTLE_RATES.get("auth")
    if not rate:
        return None
    count, period = rate.split("/")
    return int(count), PERIODS[period[0]]


def take_attempt(request) -> int:
    """Count one attempt from the request's client: 0 when it may go ahead, otherwise the seconds
    until the next one may (a refused attempt is not counted)."""
    rate = auth_rate()
    if rate is None:
        return 0
    limit, period = rate
    now = time.time()
    window = int(now // period)
    prefix = f"auth_attempts_{client_address(request)}_"
    key = f"{prefix}{window}"
    cache.add(key, 0, timeout=2 * period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr: a new window
        return 0
    previous = cache.get(f"{prefix}{window - 1}") or 0
    left_of_previous = 1 - (now - window * period) / period
    if count + previous * left_of_previous <= limit or not count:  # `not count`: Redis down, fail open
        return 0
    cache.decr(key)
    if count > limit:
        return max(1, math.ceil((window + 1) * period - now))
    # Wait until the previous window's share has shrunk enough for one more attempt.
    return max(1, math.ceil(left_of_previous * period - (limit - count) * period / previous))


def too_many_attempts(request, wait: int):
    """The pages' answer: 429 with Retry-After and a page saying when to try again."""
    retry_at = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + wait))
    response = render(request, "accounts/too_many_attempts.html", {"wait": wait, "retry_at": retry_at}, status=429)
    response["Retry-After"] = str(wait)
    return response


def attempts_limited(view):
    """A page view whose POSTs count against the client's authentication attempts."""

    @wraps(view)
    def limited(request, *args, **kwargs):
        if request.method == "POST":
            wait = take_attempt(request)
            if wait:
                return too_many_attempts(request, wait)
        return view(request, *args, **kwargs)

    return limited
