"""The conductor: the one long-running loop between the database and the GPU fleet.

Each pass it (1) dispatches queued generations in the order of the dispatch policy, no
more than the idle workers of each queue can start now (plus a prefetch), (2) reads worker
events from the Redis Stream through a consumer group, applies each to the database and
acknowledges it only once applied, then tells the live pages, and (3) every few seconds
reconciles (`reconcile.py`): an attempt whose worker fell silent, whose work-horse died, or
whose job vanished before any worker took it, is dispatched again; one that a live worker
still claims is kept, and its RQ record rebuilt if Redis lost it.

Killing it loses nothing: unacknowledged events stay pending in the group, queued
generations stay queued in the database. Two may run: a short lease (`leader.py`) lets one
lead, and the other takes over about two seconds after the leader dies.
"""

from __future__ import annotations

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

from generations.broker import heartbeats, jobs
from generations.broker.connection import connection as default_connection
from generations.broker.messages import WAKE
from generations.broker.previews import preview_store
from generations.dispatch import attempts, schema
from generations.dispatch.leader import LEADER_KEY, LeaderLease
from generations.dispatch.reconcile import DELIVERED, VANISHED, Reconciler
from generations.dispatch.streams import EventStreams
from generations.domain.policy import plan
from generations.fleet.autoscale import Autoscaler
from generations.fleet.hosts import hosts_reapply, security_event_record
from generations.fleet.workers import sync as fleet_sync
from generations.live import groups
from generations.models import Generation, Round, SecurityEvent
from generations.queue.line import load, pending_of
from generations.queue.selectors import NOT_SHOWN
from generations.queue.snapshot import LineKeeper
from generations.queue.window import windows_update
from gpu_worker import protocol

log = logging.getLogger(__name__)

S = Generation.Status
GROUP = "conductor"
__all__ = ["GROUP", "LEADER_KEY", "Conductor", "LeadershipLost"]
# How often a standby looks whether the leader's lease lapsed.
STANDBY_POLL_S = 0.2
# The line (every queued card's place and ETA) is published at most this often, unless a pass moved it.
LINE_EVERY_S = 0.5


class LeadershipLost(Exception):
    """The lease lapsed mid-pass: stop acting; the new leader replays what was left unacknowledged."""


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
        self.lease = LeaderLease(self.redis, identity=self.identity, ttl=settings.CONDUCTOR_LEADER_TTL)
        # Once it has stood for election it acts only while it holds the lease; driven step by step
        # by a caller that never asked to lead (a script, a test), it acts when told to.
        self._elected = False
        self.reconciler = Reconciler(self.redis)
        self._last_reconcile = 0.0
        # Positions and ETAs, computed once per pass that moved the line; pushed to those it moved for.
        self.line = LineKeeper()
        self._line_moved = False
        self._line_checked_at = 0.0
        self._woken_at: float | None = None
        self._last_wake_pass = 0.0
        self.autoscaler = Autoscaler()
        self.streams = EventStreams(self.redis, self.stream, GROUP)
        self.streams.ensure_groups()  # the shared stream's; the hosts' join when run() starts

    # --- setup --------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        self.streams.refresh()
        self.streams.ensure_groups()

    def lead(self) -> bool:
        """Hold (or take) the leader lease; False while another conductor holds it."""
        self._elected = True
        return self.lease.acquire()

    def resign(self) -> None:
        self.lease.release()

    def acting(self, *, verify: bool = False) -> bool:
        """May this conductor act now? `verify` asks Redis too (before an irreversible step)."""
        if not self._elected:
            return True
        return self.lease.verify() if verify else self.lease.held()

    def _fence(self, *, verify: bool = False) -> None:
        if not self.acting(verify=verify):
            raise LeadershipLost()

    # --- dispatch -----------------------------------------------------------------------

    def capacity(self, queues: set[str], workers: list[heartbeats.WorkerInfo]) -> dict[str, int]:
        """Jobs each queue may take now: idle workers (of these heartbeats) + prefetch − jobs already
        waiting in RQ."""
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

    @staticmethod
    def worker_count(workers: list[heartbeats.WorkerInfo]) -> int:
        """Live workers that take jobs: the burst window shares them among expected filmmakers."""
        return sum(1 for w in workers if w.state != "draining")

    def dispatch_once(self) -> int:
        """Send queued generations to RQ in policy order, as far as capacity allows."""
        # A paused round's queue waits (its running jobs finish); a closed round's was cancelled.
        waiting = Generation.objects.filter(status=S.QUEUED, round__status=Round.Status.OPEN)
        queues = set(waiting.values_list("template__queue", flat=True).distinct())
        if not queues:
            return 0
        in_flight, finished = load()
        beats = heartbeats.workers(self.redis)  # read once per pass: the window's share and capacity
        caps, closed = windows_update(in_flight, finished, self.worker_count(beats))
        if closed:
            self._line_moved = True  # held jobs are released: positions change even if none was sent
        capacity = self.capacity(queues, beats)
        if not any(n > 0 for n in capacity.values()):
            # Every GPU busy: nothing to send, so the queue is not read. In a burst that is most
            # passes (each batch of progress events makes one), and reading the whole queue was
            # most of the conductor's CPU, taken from the web answering the burst.
            return 0
        queued = list(waiting.select_related("template").defer(*NOT_SHOWN))  # a job's workflow: once sent
        by_id = {g.pk: g for g in queued}
        chosen = plan(pending_of(queued), in_flight, finished, capacity, caps)
        return sum(self._send(by_id[p.id]) for p in chosen)

    def _send(self, generation: Generation) -> bool:
        """Dispatch one generation: a new attempt in the database, then its job in RQ."""
        self._fence(verify=True)
        if not attempts.generation_dispatch(generation=generation):
            return False
        try:
            self._enqueue(generation)
        except redis.RedisError:
            log.exception("enqueue of generation %s failed; back to queued", generation.pk)
            attempts.generation_requeue(
                generation_id=generation.pk, attempt=generation.attempt, reason="Waiting for the queue…"
            )
            raise
        log.info("dispatched generation %s attempt %s", generation.pk, generation.attempt)
        return True

    def _enqueue(self, generation: Generation) -> None:
        jobs.queue(generation.template.queue, self.redis).enqueue(
            protocol.JOB_FUNCTION,
            kwargs=attempts.job_kwargs(generation=generation),
            job_id=protocol.job_id(generation.pk, generation.attempt),
            **job_options(generation),
        )

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
        handled = 0
        for stream, entries in self.streams.read(self.consumer, start, block_ms=block_ms, count=count):
            with groups.batched():  # a batch's pushes go out together, each once
                for entry_id, fields in entries:
                    self._handle(entry_id, fields, stream=stream)
                    handled += 1
        return handled

    def _handle(self, entry_id: bytes, fields: dict[bytes, bytes], *, stream: str | None = None) -> None:
        stream = stream or self.stream
        host = self.streams.host_of(stream)  # None: the shared stream, written by trusted users only
        try:
            event: dict[str, Any] = schema.event_parse(
                fields.get(b"data"), host_username=host.username if host else None
            )
        except schema.Invalid as exc:
            log.warning("dropping invalid event %s from %s: %s", entry_id, stream, exc)
            if host is not None:
                security_event_record(kind=SecurityEvent.Kind.INVALID_EVENT, host=host, detail=str(exc))
            self.redis.xack(stream, GROUP, entry_id)
            return
        if event["type"] == WAKE and self._woken_at is None:
            self._woken_at = time.monotonic()
        if event["type"] == protocol.PREVIEW:
            self._keep_preview(entry_id, event, stream=stream, host=host)
            return
        if event["type"] == protocol.REFUSED:
            security_event_record(
                kind=SecurityEvent.Kind.REFUSED_JOB,
                host=host,
                detail=f"{event['worker']} refused job {event['job_id']}: {event['reason']}",
            )
        elif event["type"] != WAKE:
            self._fence()  # a deposed leader leaves the event pending for the new one
            attempts.event_apply(event, host=host)  # it tells the pages itself
        # Acknowledge only after the database has it: a crash before this line replays the event.
        self.redis.xack(stream, GROUP, entry_id)

    def _keep_preview(self, entry_id: bytes, event: dict[str, Any], *, stream: str, host: Any) -> None:
        # Images are bulky: keep the latest per job in its own key and drop the entry now. Only the
        # attempt's holder may show one.
        running = Generation.objects.filter(
            pk=event["generation_id"], attempt=event["attempt"], status=S.RUNNING
        )
        if host is not None:
            running = running.filter(host=host)
        owner = running.values_list("owner_id", flat=True).first()
        stored = owner is not None and preview_store(event, self.redis)
        self.redis.xack(stream, GROUP, entry_id)
        self.redis.xdel(stream, entry_id)
        owner = owner if stored else None
        if owner is not None:
            groups.generation_changed(owner_id=owner, generation_id=int(event["generation_id"]))

    # --- reconcile ----------------------------------------------------------------------

    def reconcile_once(self, *, now: float | None = None) -> int:
        """Re-dispatch attempts that are lost (see reconcile.py) and rebuild the RQ record of those a
        live worker still runs. Returns how many were re-dispatched."""
        now = time.time() if now is None else now
        try:
            lost, adopt = self.reconciler.judge(now=now)
            for g, worker in adopt:
                self._fence()
                self._adopt(g, worker)
        except (redis.RedisError, DatabaseError):
            # Whatever was suspected is stale now: the grace periods start again.
            self.reconciler.failed()
            raise
        n = 0
        for verdict in lost:
            g = verdict.generation
            self._fence(verify=True)
            self.reconciler.forget(g.pk, g.attempt)
            if verdict.kind == DELIVERED:
                log.warning("generation %s attempt %s: %s", g.pk, g.attempt, verdict.reason)
                attempts.event_apply(
                    {
                        "type": protocol.SUCCEEDED,
                        "generation_id": g.pk,
                        "attempt": g.attempt,
                        "worker": g.worker,
                    }
                )
                continue
            if verdict.kind == VANISHED:
                # Nothing ran: the same attempt goes back into RQ (its card and attempts unchanged).
                log.warning("generation %s attempt %s: %s; enqueued again", g.pk, g.attempt, verdict.reason)
                self._enqueue(g)
                continue
            if attempts.attempt_lost(generation_id=g.pk, attempt=g.attempt, reason=verdict.reason):
                n += 1
        return n

    def _adopt(self, g: Generation, worker: str) -> None:
        log.warning(
            "generation %s attempt %s: RQ lost its job, worker %s still runs it; rebuilding the record",
            g.pk,
            g.attempt,
            worker,
        )
        jobs.job_adopt(
            g.template.queue,
            g.pk,
            g.attempt,
            kwargs=attempts.job_kwargs(generation=g),
            options=job_options(g),
            conn=self.redis,
        )

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
        with groups.batched():
            sent = self.dispatch_once()
            # In a burst each pass finds the line changed by the submissions that just arrived, and
            # publishing it computes every ETA of the queue: at most every LINE_EVERY_S lets one
            # publication cover many (until then new cards say "waiting"). A pass that sent jobs or
            # released held ones moves everyone's place: that is published at once.
            if sent or self._line_moved or time.monotonic() - self._line_checked_at >= LINE_EVERY_S:
                self.line.refresh(self.redis, force=self._line_moved)
                self._line_checked_at = time.monotonic()
        self._line_moved = False
        if time.monotonic() - self._last_reconcile >= self.reconcile_every:
            self._last_reconcile = time.monotonic()
            self.reconcile_once()
            # Redis restarted without the hosts' users: give them back before their workers notice.
            hosts_reapply(self.redis)
            self.streams.refresh()
            self.streams.trim()
            fleet_sync(self.redis)
            self.autoscaler.publish(self.redis, settings.RQ_QUEUE_NAMES)

    def run(self, stop: threading.Event, *, block_ms: int = 500) -> None:
        log.info("conductor %s, stream %s", self.identity, self.stream)
        self.streams.refresh()  # the enrolled hosts' streams, followed at every reconcile after
        leading = False
        try:
            while not stop.is_set():
                try:
                    if not self.lead():
                        if leading:
                            log.warning("conductor %s no longer leads", self.identity)
                        leading = False
                        stop.wait(STANDBY_POLL_S)
                        continue
                    if not leading:
                        log.info("conductor %s leads", self.identity)
                        leading = True
                        # What it suspected before (in an earlier term) was not watched since.
                        self.reconciler.suspects.clear()
                    self.step(block_ms=block_ms)
                except LeadershipLost:
                    log.warning("conductor %s lost its lease mid-pass; standing by", self.identity)
                    leading = False
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("redis unavailable (%s); retrying", exc)
                    stop.wait(1.0)
                except DatabaseError:
                    log.exception("database error; retrying")
                    close_old_connections()
                    stop.wait(1.0)
        finally:
            self.resign()


def job_options(generation: Generation) -> dict[str, Any]:
    """How RQ keeps an attempt's job (its enqueue, and its record rebuilt after Redis lost it)."""
    return {
        # RQ's own limit is a backstop behind the worker's per-template timeout, plus the time a worker
        # may keep trying to deliver a finished render to a web app that is down.
        "job_timeout": max(settings.GENERATION_JOB_TIMEOUT, generation.template.timeout_seconds + 120)
        + protocol.DELIVERY_PATIENCE_S,
        "result_ttl": 3600,
        "failure_ttl": 24 * 3600,
        "description": f"generation {generation.pk} attempt {generation.attempt}",
    }
