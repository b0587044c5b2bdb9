"""Throttles whose rates are read per request (DRF's read them once at import time).

Rates live in `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`: `anon`, `user`, and the scopes named
by views (`auth`, `uploads`, `diff`). Counters are kept in the default cache (Redis), so every
web process shares them.
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle


class _LiveRates:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonThrottle(_LiveRates, AnonRateThrottle):
    pass


class UserThrottle(_LiveRates, UserRateThrottle):
    pass


class ScopedThrottle(ScopedRateThrottle):
    """Applies only to views that set `throttle_scope`."""

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super(ScopedRateThrottle, self).allow_request(request, view)
