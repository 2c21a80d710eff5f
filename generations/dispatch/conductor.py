"""The conductor: the one long-running loop between the database and the GPU fleet.

Each pass it (1) dispatches queued generations in the order of the dispatch policy, no
more than the idle workers of each queue can start now (plus a prefetch), (2) reads worker
events from the Redis Stream through a consumer group, applies each to the database and
acknowledges it only once applied, then tells the live pages, and (3) every few seconds
reconciles: an attempt whose worker stopped heartbeating, whose RQ job vanished (Redis
lost its data) or failed with the work-horse, is dispatched again.

Killing it loses nothing: unacknowledged events stay pending in the group, queued
generations stay queued in the database. Two may run: a Redis lock lets one lead, and
the other takes over within seconds when the leader dies.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from redis.exceptions import LockError
from rq.job import JobStatus

from generations.broker import heartbeats, jobs
from generations.broker.connection import connection as default_connection
from generations.broker.messages import WAKE
from generations.broker.previews import preview_store
from generations.dispatch import attempts
from generations.domain.policy import plan
from generations.fleet.autoscale import Autoscaler
from generations.fleet.workers import sync as fleet_sync
from generations.live import groups
from generations.models import Generation, Round
from generations.queue.line import load, pending_of
from generations.queue.snapshot import LineKeeper
from generations.queue.window import windows_update
from gpu_worker import protocol

log = logging.getLogger(__name__)

S = Generation.Status
GROUP = "conductor"
LEADER_KEY = "workshop:conductor:leader"
RQ_GONE = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


class Conductor:
    def __init__(
        self,
        *,
        connection: redis.Redis | None = None,
        stream: str | None = None,
        consumer: str = "conductor",
        reconcile_every: float = 2.0,
    ) -> None:
        self.redis = connection or default_connection()
        self.stream = stream or settings.EVENTS_STREAM
        # A name shared by every conductor: a new leader reads what the old one left pending.
        self.consumer = consumer
        self.reconcile_every = reconcile_every
        self.identity = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self._lock = self.redis.lock(LEADER_KEY, timeout=settings.CONDUCTOR_LEADER_TTL, thread_local=False)
        self._suspects: dict[tuple[int, int], tuple[float, str]] = {}
        self._last_reconcile = 0.0
        # Positions and ETAs, computed once per pass that moved the line; pushed to those it moved for.
        self.line = LineKeeper()
        self._line_moved = False
        self._woken_at: float | None = None
        self._last_wake_pass = 0.0
        self.autoscaler = Autoscaler()
        self._ensure_group()

    # --- setup --------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def lead(self) -> bool:
        """Hold (or take) the leader lock; False while another conductor holds it."""
        try:
            if self._lock.owned():
                self._lock.reacquire()
                return True
        except LockError:
            pass
        return bool(self._lock.acquire(blocking=False))

    def resign(self) -> None:
        try:
            if self._lock.owned():
                self._lock.release()
        except (LockError, redis.RedisError):
            pass

    # --- dispatch -----------------------------------------------------------------------

    def capacity(self, queues: set[str]) -> dict[str, int]:
        """Jobs each queue may take now: idle workers + prefetch − jobs already waiting in RQ."""
        workers = heartbeats.workers(self.redis)
        # A heartbeat may still say idle for a worker that just started a job.
        running_on = set(Generation.objects.filter(status=S.RUNNING).values_list("worker", flat=True))
        waiting = Counter(
            Generation.objects.filter(status=S.DISPATCHED).values_list("template__queue", flat=True)
        )
        return {
            q: sum(1 for w in workers if w.serves(q) and w.state == "idle" and w.name not in running_on)
            + settings.DISPATCH_PREFETCH
            - waiting[q]
            for q in queues
        }

    def worker_count(self) -> int:
        """Live workers that take jobs: the burst window shares them among expected filmmakers."""
        return sum(1 for w in heartbeats.workers(self.redis) if w.state != "draining")

    def dispatch_once(self) -> int:
        """Send queued generations to RQ in policy order, as far as capacity allows."""
        # A paused round's queue waits (its running jobs finish); a closed round's was cancelled.
        queued = list(
            Generation.objects.filter(status=S.QUEUED, round__status=Round.Status.OPEN).select_related(
                "template"
            )
        )
        if not queued:
            return 0
        in_flight, finished = load()
        workers = self.worker_count()
        caps, closed = windows_update(in_flight, finished, workers)
        by_id = {g.pk: g for g in queued}
        capacity = self.capacity({g.template.queue for g in queued})
        chosen = plan(pending_of(queued), in_flight, finished, capacity, caps)
        sent = sum(self._send(by_id[p.id]) for p in chosen)
        if closed:
            self._line_moved = True  # held jobs are released: positions change even if none was sent
        return sent

    def _send(self, generation: Generation) -> bool:
        """Dispatch one generation: a new attempt in the database, then its job in RQ."""
        if not attempts.generation_dispatch(generation=generation):
            return False
        try:
            jobs.queue(generation.template.queue, self.redis).enqueue(
                protocol.JOB_FUNCTION,
                kwargs=attempts.job_kwargs(generation=generation),
                job_id=protocol.job_id(generation.pk, generation.attempt),
                # RQ's own limit is a backstop behind the worker's per-template timeout.
                job_timeout=max(settings.GENERATION_JOB_TIMEOUT, generation.template.timeout_seconds + 120),
                result_ttl=3600,
                failure_ttl=24 * 3600,
                description=f"generation {generation.pk} attempt {generation.attempt}",
            )
        except redis.RedisError:
            log.exception("enqueue of generation %s failed; back to queued", generation.pk)
            attempts.generation_requeue(
                generation_id=generation.pk, attempt=generation.attempt, reason="Waiting for the queue…"
            )
            raise
        log.info("dispatched generation %s attempt %s", generation.pk, generation.attempt)
        return True

    # --- events -------------------------------------------------------------------------

    def consume_once(self, *, block_ms: int = 1000, count: int = 100) -> int:
        """Apply a batch of events: first any left pending by a previous run, then new ones."""
        try:
            handled = self._consume("0", block_ms=None, count=count)
            if handled:
                return handled
            return self._consume(">", block_ms=block_ms, count=count)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost its data (a restart without persistence): start the group again.
            log.warning("events group missing; recreating it")
            self._ensure_group()
            return 0

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
        if event.get("type") == WAKE and self._woken_at is None:
            self._woken_at = time.monotonic()
        if event.get("type") == protocol.PREVIEW:
            self._keep_preview(entry_id, event)
            return
        if event.get("type") != WAKE:
            attempts.event_apply(event)  # it tells the pages itself
        # Acknowledge only after the database has it: a crash before this line replays the event.
        self.redis.xack(self.stream, GROUP, entry_id)

    def _keep_preview(self, entry_id: bytes, event: dict[str, Any]) -> None:
        # Images are bulky: keep the latest per job in its own key and drop the entry now.
        stored = preview_store(event, self.redis)
        self.redis.xack(self.stream, GROUP, entry_id)
        self.redis.xdel(self.stream, entry_id)
        owner = (
            Generation.objects.filter(
                pk=event.get("generation_id"), attempt=event.get("attempt"), status=S.RUNNING
            )
            .values_list("owner_id", flat=True)
            .first()
            if stored
            else None
        )
        if owner is not None:
            groups.generation_changed(owner_id=owner, generation_id=int(event["generation_id"]))

    # --- reconcile ----------------------------------------------------------------------

    def reconcile_once(self, *, now: float | None = None) -> int:
        """Re-dispatch attempts that are lost. A condition must hold for LOST_GRACE_SECONDS
        (events already in the stream get applied first). Returns how many were re-dispatched."""
        now = time.time() if now is None else now
        alive = {w.name: w for w in heartbeats.workers(self.redis)}
        seen: set[tuple[int, int]] = set()
        lost = 0
        for g in Generation.objects.filter(status__in=Generation.IN_FLIGHT).select_related("template"):
            reason = self._why_lost(g, alive)
            key = (g.pk, g.attempt)
            if reason is None:
                continue
            seen.add(key)
            first, _ = self._suspects.setdefault(key, (now, reason))
            if now - first >= settings.LOST_GRACE_SECONDS:
                del self._suspects[key]
                if attempts.attempt_lost(generation_id=g.pk, attempt=g.attempt, reason=reason):
                    lost += 1
        for key in set(self._suspects) - seen:
            del self._suspects[key]
        return lost

    def _why_lost(self, g: Generation, alive: dict[str, heartbeats.WorkerInfo]) -> str | None:
        status = jobs.job_status(g.pk, g.attempt, self.redis)
        if status is None:
            return "its job vanished from the queue (Redis lost its data?)"
        if status in RQ_GONE:
            return f"RQ reports its job {status.value} (the worker process died?)"
        if (
            status == JobStatus.QUEUED
            and jobs.queue(g.template.queue, self.redis).get_job_position(protocol.job_id(g.pk, g.attempt))
            is None
        ):
            # Taken off the queue by a worker that died before starting it (RQ parks it in an
            # intermediate list that only another worker's maintenance pass clears, minutes later).
            return "a worker took its job and died before starting it"
        claimed = any(w.generation_id == g.pk and w.attempt == g.attempt for w in alive.values())
        if g.status == S.RUNNING and not claimed:
            worker = alive.get(g.worker)
            if worker is None:
                return f"no heartbeat from worker {g.worker or '?'} for {settings.WORKER_LOST_AFTER} s"
            return f"worker {g.worker} is no longer running it"
        if g.status == S.DISPATCHED and status == JobStatus.STARTED and not claimed:
            return "the worker that took it stopped heartbeating"
        return None

    # --- loop ---------------------------------------------------------------------------

    def step(self, *, block_ms: int = 500) -> None:
        """One pass of the leader: events, then dispatch, and now and then a reconcile."""
        self.consume_once(block_ms=block_ms)
        if self._woken_at is not None:
            # Submissions wake us at most once per debounce period: a lone one is dispatched at once,
            # and the rest of a burst arrives while we wait, so one pass orders all of it
            # (dispatching each click at once hands idle GPUs to whoever clicked first).
            debounce = settings.DISPATCH_DEBOUNCE_MS / 1000
            while (left := self._last_wake_pass + debounce - time.monotonic()) > 0:
                self.consume_once(block_ms=max(int(left * 1000), 1))
            self._woken_at = None
            self._last_wake_pass = time.monotonic()
        self.dispatch_once()
        self.line.refresh(self.redis, force=self._line_moved)
        self._line_moved = False
        if time.monotonic() - self._last_reconcile >= self.reconcile_every:
            self._last_reconcile = time.monotonic()
            self.reconcile_once()
            fleet_sync(self.redis)
            self.autoscaler.publish(self.redis, settings.RQ_QUEUE_NAMES)

    def run(self, stop: threading.Event, *, block_ms: int = 500) -> None:
        log.info("conductor %s, stream %s", self.identity, self.stream)
        leading = False
        try:
            while not stop.is_set():
                try:
                    if not self.lead():
                        if leading:
                            log.warning("lost the leader lock")
                        leading = False
                        stop.wait(1.0)
                        continue
                    if not leading:
                        log.info("conductor %s leads", self.identity)
                        leading = True
                    self.step(block_ms=block_ms)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("redis unavailable (%s); retrying", exc)
                    stop.wait(1.0)
                except DatabaseError:
                    log.exception("database error; retrying")
                    close_old_connections()
                    stop.wait(1.0)
        finally:
            self.resign()
