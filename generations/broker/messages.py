"""Nudges through Redis: wake the conductor after a submission, tell a worker to stop an attempt."""

from __future__ import annotations

import json
import logging

import redis
from django.conf import settings

from gpu_worker import protocol

from .connection import connection

log = logging.getLogger(__name__)

# Not a worker event: the web app adds it to the stream after a submission so the conductor,
# blocked reading events, wakes and dispatches at once.
WAKE = "wake"


def wake(conn: redis.Redis | None = None) -> None:
    try:
        (conn or connection()).xadd(
            settings.EVENTS_STREAM,
            {"data": json.dumps({"type": WAKE})},
            maxlen=protocol.EVENTS_STREAM_MAXLEN,
            approximate=True,
        )
    except redis.RedisError:
        # The conductor still dispatches on its next pass, within a second.
        log.warning("could not wake the conductor", exc_info=True)


def signal_cancel(
    generation_id: int, attempt: int, conn: redis.Redis | None = None, *, why: str = protocol.CANCEL_CANCELLED
) -> None:
    """Tell whichever worker runs this attempt to stop (it polls the key; the message is a nudge).
    `why` (protocol.CANCEL_LOST or CANCEL_CANCELLED) lets the worker tell RQ how the job ended."""
    conn = conn or connection()
    conn.set(protocol.cancel_key(generation_id, attempt), why, ex=protocol.CANCEL_TTL_S)
    conn.publish(protocol.CANCEL_CHANNEL, json.dumps({"generation_id": generation_id, "attempt": attempt}))
