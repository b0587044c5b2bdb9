"""Throttles whose rates are read per request (DRF's read them once at import time).

Rates live in `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`: `anon`, `user`, and the scopes named
by views (`uploads`, `diff`); `auth` is the authentication attempts' limit that the token view
shares with the log-in pages (`accounts.attempts`). Counters are kept in the default cache
(Redis), so every web process shares them; anonymous clients are told apart by their real address
(`TRUSTED_PROXY_COUNT`), never by the whole `X-Forwarded-For` header.
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, ScopedRateThrottle, UserRateThrottle

from accounts.attempts import client_address, take_attempt


class _LiveRates:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request):
        return client_address(request)


class AnonThrottle(_LiveRates, AnonRateThrottle):
    pass


class UserThrottle(_LiveRates, UserRateThrottle):
    pass


class ScopedThrottle(ScopedRateThrottle):
    """Applies only to views that set `throttle_scope`."""

    get_ident = _LiveRates.get_ident

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super(ScopedRateThrottle, self).allow_request(request, view)


class AuthAttemptThrottle(BaseThrottle):
    """Authentication attempts (`API_THROTTLE_AUTH`), counted with the log-in and sign-up pages'."""

    def allow_request(self, request, view):
        self._wait = take_attempt(request)
        return not self._wait

    def wait(self):
        return self._wait
