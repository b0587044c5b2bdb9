"""ASGI entry point for daphne: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diffplatform.settings.local")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from experiments.live.routing import websocket_urlpatterns  # noqa: E402
from experiments.live.tickets import TicketAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # `?ticket=` (scripts, see experiments.live.tickets): the ticket names the user;
        # otherwise the browser's session, with the Origin checked.
        "websocket": TicketAuthMiddleware(
            ticket_app=URLRouter(websocket_urlpatterns),
            default_app=AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        ),
    }
)
