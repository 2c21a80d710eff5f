"""The conductor: the one long-running loop between the database and the GPU fleet.

Each pass it (1) dispatches queued generations to their RQ queue and (2) reads worker
events from the Redis Stream through a consumer group, applies each to the database and
acknowledges it only once applied, then tells the live pages. Killing it loses nothing:
unacknowledged events stay pending in the group and are read again on restart, and
queued generations stay queued in the database.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from rq import Queue
from rq.serializers import JSONSerializer

from gpu_worker import protocol

from . import notify, services
from .models import Generation

log = logging.getLogger(__name__)

GROUP = "conductor"
# Not a worker event: the web app adds it to the stream after a submission so the
# conductor, blocked reading events, wakes and dispatches at once.
WAKE = "wake"


def wake(connection: redis.Redis | None = None) -> None:
    conn = connection or redis.Redis.from_url(settings.REDIS_URL)
    try:
        conn.xadd(
            settings.EVENTS_STREAM,
            {"data": json.dumps({"type": WAKE})},
            maxlen=protocol.EVENTS_STREAM_MAXLEN,
            approximate=True,
        )
    except redis.RedisError:
        # The conductor still dispatches on its next pass, within a second.
        log.warning("could not wake the conductor", exc_info=True)


class Conductor:
    def __init__(
        self,
        *,
        connection: redis.Redis | None = None,
        stream: str | None = None,
        consumer: str | None = None,
        dispatch_batch: int = 50,
    ) -> None:
        self.redis = connection or redis.Redis.from_url(settings.REDIS_URL)
        self.stream = stream or settings.EVENTS_STREAM
        # One conductor runs at a time; a stable name lets a restart reclaim its own pending events.
        self.consumer = consumer or "conductor"
        self.dispatch_batch = dispatch_batch
        self._queues: dict[str, Queue] = {}
        self._ensure_group()

    # --- setup --------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    # --- dispatch -----------------------------------------------------------------------

    def dispatch_once(self) -> int:
        """Send queued generations to RQ, oldest first. Returns how many were sent."""
        sent = 0
        queued = Generation.objects.filter(status=Generation.Status.QUEUED).select_related("template")
        for generation in queued.order_by("created_at")[: self.dispatch_batch]:
            if not services.generation_dispatch(generation=generation):
                continue
            try:
                self.queue(generation.template.queue).enqueue(
                    protocol.JOB_FUNCTION,
                    kwargs=services.job_kwargs(generation=generation),
                    job_id=protocol.job_id(generation.pk, generation.attempt),
                    # RQ's own limit is a backstop behind the worker's per-template timeout.
                    job_timeout=max(
                        settings.GENERATION_JOB_TIMEOUT, generation.template.timeout_seconds + 120
                    ),
                    result_ttl=3600,
                    failure_ttl=24 * 3600,
                    description=f"generation {generation.pk} attempt {generation.attempt}",
                )
            except redis.RedisError:
                log.exception("enqueue of generation %s failed; back to queued", generation.pk)
                services.generation_requeue(
                    generation_id=generation.pk, attempt=generation.attempt, reason="Waiting for the queue…"
                )
                raise
            sent += 1
            log.info(
                "dispatched generation %s attempt %s to %s",
                generation.pk,
                generation.attempt,
                generation.template.queue,
            )
            notify.generation_changed(owner_id=generation.owner_id, generation_id=generation.pk)
        return sent

    # --- events -------------------------------------------------------------------------

    def consume_once(self, *, block_ms: int = 1000, count: int = 100) -> int:
        """Apply a batch of events: first any left pending by a previous run, then new ones."""
        handled = self._consume("0", block_ms=None, count=count)
        if handled:
            return handled
        return self._consume(">", block_ms=block_ms, count=count)

    def _consume(self, start: str, *, block_ms: int | None, count: int) -> int:
        reply = self.redis.xreadgroup(GROUP, self.consumer, {self.stream: start}, count=count, block=block_ms)
        handled = 0
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                self._handle(entry_id, fields)
                handled += 1
        return handled

    def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            event: dict[str, Any] = json.loads(fields.get(b"data", b"{}"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("dropping unreadable event %s", entry_id)
            self.redis.xack(self.stream, GROUP, entry_id)
            return
        if event.get("type") == WAKE:
            self.redis.xack(self.stream, GROUP, entry_id)
            return
        applied = services.event_apply(event)
        # Acknowledge only after the database has it: a crash before this line replays the event.
        self.redis.xack(self.stream, GROUP, entry_id)
        if applied is not None:
            notify.generation_changed(owner_id=applied.owner_id, generation_id=applied.generation_id)

    # --- loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, block_ms: int = 500) -> None:
        log.info("conductor %s on %s, stream %s", self.consumer, socket.gethostname(), self.stream)
        while not stop.is_set():
            try:
                self.dispatch_once()
                self.consume_once(block_ms=block_ms)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable (%s); retrying", exc)
                stop.wait(1.0)
            except DatabaseError:
                log.exception("database error; retrying")
                close_old_connections()
                stop.wait(1.0)
