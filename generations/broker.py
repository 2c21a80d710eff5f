"""The web side's handle on Redis: RQ queues, job lookups and cancel signals."""

from __future__ import annotations

import json
import logging
from functools import cache

import redis
from django.conf import settings
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from gpu_worker import protocol

log = logging.getLogger(__name__)


@cache
def _connection(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def connection() -> redis.Redis:
    return _connection(settings.REDIS_URL)


def queue(name: str, conn: redis.Redis | None = None) -> Queue:
    return Queue(name, connection=conn or connection(), serializer=JSONSerializer)


def job_status(generation_id: int, attempt: int, conn: redis.Redis | None = None) -> JobStatus | None:
    """RQ's status of an attempt's job, or None when RQ no longer knows it (lost or flushed)."""
    try:
        job = Job.fetch(
            protocol.job_id(generation_id, attempt),
            connection=conn or connection(),
            serializer=JSONSerializer,
        )
    except NoSuchJobError:
        return None
    return job.get_status(refresh=False)


def remove_job(queue_name: str, generation_id: int, attempt: int, conn: redis.Redis | None = None) -> None:
    """Take a job out of its RQ queue before a worker picks it up (cancel while dispatched)."""
    conn = conn or connection()
    job_id = protocol.job_id(generation_id, attempt)
    try:
        queue(queue_name, conn).remove(job_id)
        Job.fetch(job_id, connection=conn, serializer=JSONSerializer).delete()
    except NoSuchJobError:
        pass


def signal_cancel(generation_id: int, attempt: int, conn: redis.Redis | None = None) -> None:
    """Tell whichever worker runs this attempt to stop (it polls the key; the message is a nudge)."""
    conn = conn or connection()
    conn.set(protocol.cancel_key(generation_id, attempt), "1", ex=protocol.CANCEL_TTL_S)
    conn.publish(protocol.CANCEL_CHANNEL, json.dumps({"generation_id": generation_id, "attempt": attempt}))


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
