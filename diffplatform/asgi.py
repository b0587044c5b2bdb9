"""ASGI entry point for daphne: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diffplatform.settings.local")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from diffplatform.body_limit import BodyLimit, limit_daphne_bodies  # noqa: E402
from experiments.live.routing import websocket_urlpatterns  # noqa: E402
from experiments.live.tickets import TicketAuthMiddleware  # noqa: E402


def _django_parses_request_bodies() -> None:
    """Twisted (under daphne) parses every multipart body before Django does, only to throw the result
    away, and answers a bare 400 (no JSON, no Content-Type) to one it cannot parse, such as a form with
    no fields. Django's own parser is the one that counts: turn Twisted's off."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server
        return
    if getattr(WebRequest, "_django_parses_bodies", False):
        return
    init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("parsePOSTFormSubmission", False)
        init(self, *args, **kwargs)

    WebRequest.__init__ = __init__
    WebRequest._django_parses_bodies = True


_django_parses_request_bodies()
limit_daphne_bodies()

application = ProtocolTypeRouter(
    {
        "http": BodyLimit(django_asgi_app),
        # `?ticket=` (scripts, see experiments.live.tickets): the ticket names the user;
        # otherwise the browser's session, with the Origin checked.
        "websocket": TicketAuthMiddleware(
            ticket_app=URLRouter(websocket_urlpatterns),
            default_app=AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        ),
    }
)
