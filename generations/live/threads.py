"""Where live pages do their blocking work: reads and renders on a worker thread of the event loop's
pool, never on the loop itself and never on the one thread that synchronous views and
thread-sensitive code share (a synchronous consumer runs there: one slow render would hold up
every socket of the process)."""

from __future__ import annotations

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


def on_a_thread(func: Callable[P, R], *, door: bool = False) -> Callable[P, Coroutine[Any, Any, R]]:
    """`func` as a coroutine function run on a worker thread (the event loop's pool; with `door`,
    the one thread that serves handshakes). The thread's database connection goes back to the pool
    when it returns (channels' database_sync_to_async does the same, except under its test
    communicator, which turns that off for thread-sensitive consumers)."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False, executor=_DOOR if door else None)
