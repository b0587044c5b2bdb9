"""A limit on authentication attempts per client address, shared by every way in: the log-in and
sign-up pages, the admin's log-in and password pages and the token API (`API_THROTTLE_AUTH`, e.g.
``20/minute``; `experiments.api.throttling.AuthAttemptThrottle` applies it to the API).

The client address is `REMOTE_ADDR`, or, behind `TRUSTED_PROXY_COUNT` proxies that each append
the address they received from to `X-Forwarded-For`, the address that many hops from the right:
what a client writes into the header itself sits further left and is never read, so a fresh
header per request cannot escape the limit. Counters live in the default cache (Redis), so every
web process shares them; they are atomic increments over a sliding window (the current and the
previous fixed window, the latter weighted by how much of it the sliding one still covers).

With Redis down the limit still holds, per web process (`_LocalAttempts`): failing open would let
brute force through exactly when the cache is gone, failing closed would lock everybody out.
"""

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
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
    if not count:  # Redis is down (the cache fails open): count in this process instead
        return _local.take(client_address(request), limit, period, now)
    previous = cache.get(f"{prefix}{window - 1}") or 0
    left_of_previous = 1 - (now - window * period) / period
    if count + previous * left_of_previous <= limit:
        return 0
    cache.decr(key)
    if count > limit:
        return max(1, math.ceil((window + 1) * period - now))
    # Wait until the previous window's share has shrunk enough for one more attempt.
    return max(1, math.ceil(left_of_previous * period - (limit - count) * period / previous))


class _LocalAttempts:
    """Attempts per address in this process, over a sliding window (the times of the last `limit`
    attempts), for while Redis is down. At most `MAX_ADDRESSES` addresses are remembered (the least
    recently seen forgotten first), so memory stays bounded whatever addresses are used."""

    MAX_ADDRESSES = 10_000

    def __init__(self):
        self.lock = threading.Lock()
        self.times: OrderedDict[str, deque] = OrderedDict()

    def take(self, address: str, limit: int, period: int, now: float) -> int:
        with self.lock:
            times = self.times.pop(address, None) or deque(maxlen=limit)
            self.times[address] = times
            while len(self.times) > self.MAX_ADDRESSES:
                self.times.popitem(last=False)
            while times and times[0] <= now - period:
                times.popleft()
            if limit <= 0 or len(times) >= limit:
                return max(1, math.ceil(times[0] + period - now)) if times else period
            times.append(now)
            return 0


_local = _LocalAttempts()


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
