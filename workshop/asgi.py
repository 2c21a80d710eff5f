"""ASGI entry point: Django for HTTP, Channels consumers for the live pages."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workshop.settings")
django_asgi_app = get_asgi_application()

from workshop import require_secret_key  # noqa: E402

require_secret_key()

# Imported after Django is set up: the consumers use the ORM.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from generations.live.auth import AuthMiddlewareStack  # noqa: E402
from generations.routing import websocket_urlpatterns  # noqa: E402


class _Writable:
    """A Twisted push producer: Twisted pauses it while the socket's send buffer is full."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.event.set()

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        self.event.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.event.set()

    stopProducing = resumeProducing  # the client went away: stop waiting  # noqa: N815


def paced(inner: Any) -> Any:
    """daphne writes each body chunk into Twisted's buffer at once, however slowly the client reads:
    a streamed ZIP or video to a slow client would sit in memory whole. This waits for the buffer to
    drain before the app produces the next chunk. Outside daphne it changes nothing."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        request = send.args[0] if isinstance(send, functools.partial) and send.args else None
        if scope["type"] != "http" or not hasattr(request, "registerProducer"):
            return await inner(scope, receive, send)
        writable: _Writable | None = None

        async def send_paced(message: dict[str, Any]) -> None:
            nonlocal writable
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and writable is not None and request.producer is not None:
                request.unregisterProducer()
            await send(message)
            if message["type"] == "http.response.body" and not last and not request.finished:
                if writable is None:
                    writable = _Writable()
                    request.registerProducer(writable, True)
                await writable.event.wait()

        return await inner(scope, receive, send_paced)

    return app


application = ProtocolTypeRouter(
    {
        "http": paced(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
