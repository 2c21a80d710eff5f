"""The ASGI entry point's own wrappers around Django (workshop/asgi.py)."""

from __future__ import annotations

import asyncio
from typing import Any


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
