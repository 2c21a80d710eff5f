"""One Redis client per URL for the whole process (redis-py pools its connections)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def _connection(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def connection() -> redis.Redis:
    return _connection(settings.REDIS_URL)
