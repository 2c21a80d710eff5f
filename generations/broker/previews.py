"""The latest preview frame of each running attempt, kept in Redis while it renders."""

from __future__ import annotations

import json

import redis

from .connection import connection

PREVIEW_KEY = "workshop:preview:g{generation_id}:a{attempt}"
PREVIEW_TTL_S = 900


def preview_store(event: dict[str, object], conn: redis.Redis | None = None) -> bool:
    """Keep a running job's latest preview frame (the events stream drops it once read)."""
    try:
        key = PREVIEW_KEY.format(generation_id=int(event["generation_id"]), attempt=int(event["attempt"]))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        return False
    data = {
        "image": event.get("image", ""),
        "content_type": event.get("content_type", "image/jpeg"),
        "ts": event.get("ts", 0),
    }
    (conn or connection()).set(key, json.dumps(data), ex=PREVIEW_TTL_S)
    return True


def previews(pairs: list[tuple[int, int]], conn: redis.Redis | None = None) -> dict[int, dict[str, object]]:
    """generation id -> its latest preview for the given (generation, attempt) pairs."""
    if not pairs:
        return {}
    keys = [PREVIEW_KEY.format(generation_id=g, attempt=a) for g, a in pairs]
    found: dict[int, dict[str, object]] = {}
    for (g, _), raw in zip(pairs, (conn or connection()).mget(keys), strict=True):
        if raw:
            found[g] = json.loads(raw)
    return found
