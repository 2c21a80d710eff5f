"""ASGI entry point: Django for HTTP, Channels consumers for the live pages."""

from __future__ import annotations

import asyncio
import functools
import os
from contextlib import closing
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workshop.settings")
django.setup(set_prefix=False)


class OneHopASGIHandler(ASGIHandler):
    """Django over ASGI, with the middleware chain and the view run in one thread, in one hop.

    Every view here is synchronous. Django's own ASGI handler runs the middleware that can be async
    on the event loop, and each of their sync hooks (sessions, CSRF, messages...) hops to a thread
    and back: about ten hops per request, each waiting its turn on the loop, which a burst of
    submissions keeps busy. Run as under WSGI instead, the request hops once; responses (streamed
    files included) are still sent by the ASGI handler on the loop."""

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's own `handle`, with its three hops made one: `request_started`, the request
        and, for a response already whole, its `close()` (`request_finished`, which gives the
        database connection back to the pool) run in the thread in one go, before the bytes go
        out. Only a streamed response is closed in a hop of its own, once sent."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            # Its own task: a client that leaves stops the sending, not the thread's work, whose
            # response is then still closed (once) below.
            answer = asyncio.ensure_future(
                sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            )

            class RequestProcessed(Exception):
                pass

            try:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self.listen_for_disconnect(receive))
                        await self.send_response(await asyncio.shield(answer), send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
            response = await answer
            if response.streaming:
                await sync_to_async(response.close)()

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            response.close()  # its bytes are all here: sending them needs nothing it holds
        return response


django_asgi_app = OneHopASGIHandler()

from workshop import require_secret_key  # noqa: E402

require_secret_key()

from workshop import bodygate  # noqa: E402

bodygate.install()  # bodies refused before daphne stores them (see bodygate)

# Imported after Django is set up: the consumers use the ORM.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from generations.live.auth import AuthMiddlewareStack  # noqa: E402
from generations.live.threads import answering  # noqa: E402
from generations.routing import websocket_urlpatterns  # noqa: E402
from workshop.security import ExactOriginValidator  # noqa: E402


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


def gated(inner: Any, most: int) -> Any:
    """At most `most` HTTP requests of this process run at once; the others wait on the event loop.

    Django runs each request on a thread of its own: a burst of two hundred threads shares one
    interpreter lock, starves the event loop (which then serves every socket and Redis late) and
    queues on the database pool anyway. A request takes its turn once its body is read (a worker's
    upload of a take is not held up, nor holds anyone up, while it arrives) and gives it back when its
    response starts (a long download holds no turn)."""
    gate = asyncio.Semaphore(most)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        holding = counted = False

        async def receive_then_wait() -> dict[str, Any]:
            nonlocal holding, counted
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body") and not counted:
                counted = True
                answering.started()  # socket renders wait for this answer from now on (live.threads)
                await gate.acquire()
                holding = True
            return message

        def release() -> None:
            nonlocal holding, counted
            if holding:
                holding = False
                gate.release()
            if counted:
                counted = False
                answering.done()

        async def send_then_release(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            return await inner(scope, receive_then_wait, send_then_release)
        finally:
            release()

    return app


application = ProtocolTypeRouter(
    {
        "http": paced(gated(django_asgi_app, settings.WEB_REQUESTS_AT_ONCE)),
        "websocket": ExactOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
