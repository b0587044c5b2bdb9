"""Short-lived, single-use tickets that let scripts open a run's WebSocket without a session.

A script with an API token asks `POST /api/v1/runs/<id>/ws-ticket/`, then connects to
`/ws/runs/<id>/?ticket=<ticket>` within `TICKET_TTL_S` seconds. The ticket is stored in the
cache (Redis), bound to the user and the run, and deleted on first use (whoever deletes it wins).

Connections that carry a ticket skip the Origin check (a ticket can only be obtained with
credentials, so a foreign page cannot ride on a cookie) and get `scope["user"]` = the ticket's
user; every other connection goes through the usual Origin check and session authentication.
"""

import re
import secrets
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache

TICKET_TTL_S = 60
_RUN_PATH = re.compile(r"^/ws/runs/(?P<run_id>\d+)/$")


def _key(ticket: str) -> str:
    return f"ws-ticket:{ticket}"


def ticket_create(*, user, run_id: int) -> str:
    ticket = secrets.token_urlsafe(32)
    cache.set(_key(ticket), {"user": user.pk, "run": int(run_id)}, timeout=TICKET_TTL_S)
    return ticket


def ticket_redeem(ticket: str, run_id: int):
    """The ticket's user if it is valid for `run_id`, else None. A ticket works once."""
    if not ticket or len(ticket) > 100:
        return None
    key = _key(ticket)
    record = cache.get(key)
    if not record or not cache.delete(key):
        return None
    if record.get("run") != int(run_id):
        return None
    return get_user_model().objects.filter(pk=record.get("user"), is_active=True).first()


def _ticket_of(scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    return values[0] if values else None


class TicketAuthMiddleware:
    """Route a WebSocket by whether it carries `?ticket=`.

    With a ticket: redeem it for the run in the path and call `ticket_app` with that user (an
    invalid ticket gives the anonymous user, which consumers refuse). Without: `default_app`.
    """

    def __init__(self, ticket_app, default_app):
        self.ticket_app = ticket_app
        self.default_app = default_app

    async def __call__(self, scope, receive, send):
        ticket = _ticket_of(scope) if scope.get("type") == "websocket" else None
        if ticket is None:
            return await self.default_app(scope, receive, send)
        match = _RUN_PATH.match(scope.get("path", ""))
        user = None
        if match:
            user = await database_sync_to_async(ticket_redeem)(ticket, int(match["run_id"]))
        return await self.ticket_app({**scope, "user": user or AnonymousUser()}, receive, send)
