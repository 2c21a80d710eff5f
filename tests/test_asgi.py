"""The ASGI entry point's own wrappers around Django (workshop/asgi.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from django.urls import path


def test_it_runs_at_most_so_many_requests_at_once_and_frees_a_turn_once_the_response_starts() -> None:
    from workshop.asgi import gated

    now = {"viewing": 0, "streaming": 0}
    peak = {"viewing": 0, "streaming": 0}

    def enter(what: str, n: int) -> None:
        now[what] += n
        peak[what] = max(peak[what], now[what])

    async def django(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass  # the body arrives before the view runs
        enter("viewing", 1)
        await asyncio.sleep(0.01)
        enter("viewing", -1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        enter("streaming", 1)
        await asyncio.sleep(0.05)  # a long download
        enter("streaming", -1)
        await send({"type": "http.response.body", "body": b""})

    app = gated(django, 2)

    async def request() -> None:
        parts = iter([{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.request"}])

        async def receive() -> dict[str, Any]:
            return next(parts)

        async def send(message: dict[str, Any]) -> None:
            pass

        await app({"type": "http"}, receive, send)

    async def burst() -> None:
        await asyncio.gather(*(request() for _ in range(10)))

    asyncio.run(burst())
    assert peak["viewing"] == 2  # never more than two views at once
    assert peak["streaming"] > 2  # downloads went on without holding a turn


def _whole(request: Any) -> Any:
    from django.http import HttpResponse

    _log.append(("view", threading.get_ident()))
    return HttpResponse(b"whole")


def _streamed(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    _log.append(("view", threading.get_ident()))

    async def parts() -> Any:
        for part in (b"part 1", b"part 2"):
            yield part

    return StreamingHttpResponse(parts())


def _slow(request: Any) -> Any:
    from django.http import HttpResponse

    time.sleep(0.2)  # the client leaves meanwhile
    _log.append(("view", threading.get_ident()))
    return HttpResponse(b"too late")


urlpatterns = [path("whole", _whole), path("streamed", _streamed), path("slow", _slow)]
_log: list[tuple[str, Any]] = []


def _call(url: str, *, leave: bool = False) -> list[tuple[str, Any]]:
    """One GET through the application's Django handler; returns what happened, in order."""
    from django.core import signals

    from workshop.asgi import django_asgi_app

    def started(**kwargs: Any) -> None:
        _log.append(("started", threading.get_ident()))

    def finished(**kwargs: Any) -> None:
        _log.append(("finished", threading.get_ident()))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "https", "path": url, "raw_path": url.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 1),
             "server": ("localhost", 443)}  # fmt: skip

    async def run() -> None:
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            if leave:
                await asyncio.sleep(0.05)
                return {"type": "http.disconnect"}
            await asyncio.Event().wait()  # the client stays
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            _log.append(("sent", message.get("body", message["type"])))

        await django_asgi_app(scope, receive, send)

    _log.clear()
    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        asyncio.run(run())
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    return list(_log)


def _steps(log: list[tuple[str, Any]]) -> list[Any]:
    return [what if what != "sent" else value for what, value in log]


def test_a_whole_response_is_made_and_closed_in_one_hop_before_its_bytes_go_out(settings) -> None:
    settings.ROOT_URLCONF = __name__
    log = _call("/whole")
    # The connection goes back to the pool (request_finished) before the client is answered.
    assert _steps(log) == ["started", "view", "finished", "http.response.start", b"whole"]
    assert len({thread for what, thread in log if what != "sent"}) == 1  # one thread, one hop
    assert threading.get_ident() not in {thread for what, thread in log if what != "sent"}


def test_a_streamed_response_is_closed_once_it_has_all_gone_out(settings) -> None:
    settings.ROOT_URLCONF = __name__
    log = _call("/streamed")
    assert _steps(log) == [
        "started",
        "view",
        "http.response.start",
        b"part 1",
        b"part 2",
        "http.response.body",
        "finished",
    ]


def test_a_client_that_leaves_before_the_answer_is_sent_nothing_and_the_request_still_finishes_once(
    settings,
) -> None:
    settings.ROOT_URLCONF = __name__
    log = _call("/slow", leave=True)
    assert _steps(log) == ["started", "view", "finished"]
