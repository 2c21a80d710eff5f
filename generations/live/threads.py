"""Where live pages do their blocking work: reads and renders on a worker thread of the event loop's
pool, never on the loop itself and never on the one thread that synchronous views and
thread-sensitive code share (a synchronous consumer runs there: one slow render would hold up
every socket of the process)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


# Handshakes get a thread of their own: in a burst they would otherwise wait behind every connected
# socket's first render, queued first, and miss daphne's connect timeout.
_DOOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-door")


# A push waits at most this long for the process's HTTP answers to be sent (see answers_first).
ANSWERS_FIRST_S = 0.15


class _Answering:
    """The HTTP requests this process is answering now (workshop.asgi.gated counts them).

    One interpreter lock: a render for a socket and the answer to a click slow each other down, and
    the click is what someone is waiting for with the mouse still pressed. In a burst every submit
    also wakes a render or two (the filmmaker's own socket, the live room): these wait until the
    answers are out, or ANSWERS_FIRST_S at most, so pages still move while requests keep coming."""

    def __init__(self) -> None:
        self.busy = 0
        self.quiet: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self.quiet is None or self.loop is not loop:  # an event belongs to one loop (tests run many)
            self.quiet, self.loop = asyncio.Event(), loop
            if not self.busy:
                self.quiet.set()
        return self.quiet

    def started(self) -> None:
        self.busy += 1
        self._event().clear()

    def done(self) -> None:
        self.busy = max(self.busy - 1, 0)
        if not self.busy:
            self._event().set()

    async def wait_quiet(self, most: float) -> None:
        if self.busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event().wait(), most)


answering = _Answering()


def on_a_thread(func: Callable[P, R], *, door: bool = False) -> Callable[P, Coroutine[Any, Any, R]]:
    """`func` as a coroutine function run on a worker thread (the event loop's pool; with `door`,
    the one thread that serves handshakes). Renders for sockets wait for the HTTP answers in
    progress (`answering`, at most ANSWERS_FIRST_S); handshakes don't. The thread's database
    connection goes back to the pool when it returns (channels' database_sync_to_async does the
    same, except under its test communicator, which turns that off for thread-sensitive consumers)."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    threaded = sync_to_async(run, thread_sensitive=False, executor=_DOOR if door else None)
    if door:
        return threaded

    @functools.wraps(func)
    async def after_answers(*args: P.args, **kwargs: P.kwargs) -> R:
        await answering.wait_quiet(ANSWERS_FIRST_S)
        return await threaded(*args, **kwargs)

    return after_answers
