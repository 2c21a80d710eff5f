"""One Redis client per URL for the whole process (redis-py pools its connections)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def _connection(url: str) -> redis.Redis:
    # redis-py 8 fails past 100 connections in a pool; a burst's request threads may need more.
    return redis.Redis.from_url(url, max_connections=settings.REDIS_MAX_CONNECTIONS)


def connection() -> redis.Redis:
    return _connection(settings.REDIS_URL)
