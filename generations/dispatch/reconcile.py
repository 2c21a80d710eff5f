"""Which attempts in flight are lost, and since when: the conductor's reconcile, as a verdict per pass.

What decides, in this order:
1. A live heartbeat (younger than WORKER_LOST_AFTER) that claims the attempt: it runs, whatever RQ
   says. When RQ lost its record (a Redis restart or flush), the record is rebuilt (re-adoption).
2. Silence: the worker holding the attempt has not beaten for WORKER_LOST_AFTER + LOST_GRACE_SECONDS,
   counted from its last heartbeat, and never from before a pass that could not see Redis (then the
   workers could not beat either).
3. Anything else that says the attempt is not running (RQ failed the job with its work-horse, its
   worker beats but runs something else, the job vanished before any worker took it) must hold for
   LOST_GRACE_SECONDS from when *that* reason first held: another reason restarts the clock, and so
   does a pass that failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.conf import settings
from rq.job import JobStatus

from generations.broker import heartbeats, jobs
from generations.models import Generation, Worker
from gpu_worker import protocol

S = Generation.Status
RQ_GONE = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)

SILENT = "silent"
# Dispatched, and gone from RQ before any worker took it: nothing ran, so the same attempt is queued in
# RQ again rather than lost (a lost attempt counts towards MAX_ATTEMPTS).
VANISHED = "vanished"
# Its worker says it delivered every output and emitted `succeeded`, yet the event has not come for
# LOST_GRACE_SECONDS (Redis lost it in a restart): the attempt succeeded.
DELIVERED = "delivered"


@dataclass(frozen=True)
class Verdict:
    generation: Generation
    reason: str  # for admins (error_detail, the live room), never for the filmmaker's card
    kind: str = ""


@dataclass(frozen=True)
class Finding:
    """What one pass finds about one attempt: claimed by `worker` (adopt it when RQ lost it), or
    suspect with a reason `kind` (and, for silence, when the silence began)."""

    kind: str = ""
    reason: str = ""
    silent_since: float | None = None
    claimed_by: str = ""
    adopt: bool = False


# (generation, attempt) -> the heartbeats that name it, as running it or as delivered.
Claims = dict[tuple[int, int], list[heartbeats.WorkerInfo]]


class Reconciler:
    def __init__(self, conn: redis.Redis) -> None:
        self.redis = conn
        # (generation, attempt) -> (since, kind): when the current reason first held.
        self.suspects: dict[tuple[int, int], tuple[float, str]] = {}
        self.heard: dict[str, float] = {}  # worker -> the latest heartbeat seen (its own ts)
        self.sighted_since = 0.0  # after a failed pass: silence counts from the next good one
        self._blind = False

    def failed(self, now: float | None = None) -> None:
        """A pass could not finish: forget every suspect, and count no silence from before now."""
        self.suspects.clear()
        self._blind = True

    def judge(self, *, now: float) -> tuple[list[Verdict], list[tuple[Generation, str]]]:
        """(attempts lost now (those of kind VANISHED: to enqueue again), attempts to adopt:
        (generation, worker)) for one pass."""
        if self._blind:
            self.sighted_since, self._blind = now, False
        every = heartbeats.workers(self.redis, max_age=float("inf"))
        for w in every:
            self.heard[w.name] = max(self.heard.get(w.name, 0.0), w.ts)
        live = {w.name: w for w in every if w.age(now) <= settings.WORKER_LOST_AFTER}
        claims: Claims = {}
        for w in every:
            if w.generation_id and w.attempt:
                claims.setdefault((w.generation_id, w.attempt), []).append(w)
            if key := _key(w.delivered):
                claims.setdefault(key, []).append(w)
        lost: list[Verdict] = []
        adopt: list[tuple[Generation, str]] = []
        seen: set[tuple[int, int]] = set()
        for g in Generation.objects.filter(status__in=Generation.IN_FLIGHT).select_related(
            "template", "host"
        ):
            key = (g.pk, g.attempt)
            finding = self.examine(g, live, claims, now=now)
            if finding.claimed_by:
                if finding.adopt:
                    adopt.append((g, finding.claimed_by))
                continue
            if not finding.kind:
                continue
            seen.add(key)
            if finding.silent_since is not None:
                since, wait = finding.silent_since, settings.WORKER_LOST_AFTER + settings.LOST_GRACE_SECONDS
            else:
                first, kind = self.suspects.get(key, (now, finding.kind))
                since, wait = (first if kind == finding.kind else now), settings.LOST_GRACE_SECONDS
            self.suspects[key] = (since, finding.kind)
            if now - since >= wait:
                lost.append(Verdict(generation=g, reason=finding.reason, kind=finding.kind))
        for key in set(self.suspects) - seen:
            del self.suspects[key]
        return lost, adopt

    def forget(self, generation_id: int, attempt: int) -> None:
        self.suspects.pop((generation_id, attempt), None)

    def examine(
        self,
        g: Generation,
        live: dict[str, heartbeats.WorkerInfo],
        claims: Claims,
        *,
        now: float,
    ) -> Finding:
        status = jobs.job_status(g.pk, g.attempt, self.redis)
        job_id = protocol.job_id(g.pk, g.attempt)
        # Only the holder's heartbeats count (the host bound by the attempt's first "started"):
        # another host must not keep an attempt alive, nor say it delivered it.
        mine = [w for w in claims.get((g.pk, g.attempt), []) if g.host is None or w.host == g.host.username]
        done = next((w for w in mine if w.delivered == job_id), None)
        if done is not None:
            return Finding(
                kind=DELIVERED,
                reason=f"worker {done.name} delivered it; its succeeded event never came (lost?)",
            )
        claimer = next((w.name for w in mine if w.generation_id == g.pk and w.attempt == g.attempt), "")
        if claimer in live:
            # The worker says it runs this attempt: that wins over RQ's record, or its absence.
            return Finding(claimed_by=claimer, adopt=status is None)
        # Who holds it: the worker that started it, else one whose (stale) heartbeat still claims it.
        holder = g.worker if g.status == S.RUNNING and g.worker else claimer
        if status in RQ_GONE:
            return Finding(kind="rq-gone", reason=f"RQ reports its job {status.value} (the work-horse died?)")
        if holder and holder not in live:
            since = max(self._last_heard(holder, g), self.sighted_since)
            return Finding(
                kind=SILENT,
                reason=f"no heartbeat from worker {holder} for {now - since:.0f} s",
                silent_since=since,
            )
        if holder:
            return Finding(kind="moved-on", reason=f"worker {holder} is no longer running it")
        if g.status == S.RUNNING:
            return Finding(kind="no-worker", reason="running, but no worker says which")
        if status is None:
            return Finding(
                kind=VANISHED, reason="its job vanished from RQ before a worker took it (Redis lost it?)"
            )
        if (
            status == JobStatus.QUEUED
            and jobs.queue(g.template.queue, self.redis).get_job_position(protocol.job_id(g.pk, g.attempt))
            is None
        ):
            # Taken off the queue by a worker that died before starting it (RQ parks it in an
            # intermediate list that only another worker's maintenance pass clears, minutes later).
            return Finding(kind="limbo", reason="a worker took its job and died before starting it")
        if status == JobStatus.STARTED:
            return Finding(kind="unclaimed", reason="RQ started its job but no worker claims it")
        return Finding()

    def _last_heard(self, name: str, g: Generation) -> float:
        if name in self.heard:
            return self.heard[name]
        # A conductor that never heard it (it just took over, and Redis lost the heartbeat too).
        seen = Worker.objects.filter(name=name).values_list("last_seen", flat=True).first()
        at = seen or g.started_at or g.dispatched_at
        return at.timestamp() if at else time.time()


def _key(job_id: str) -> tuple[int, int] | None:
    """(generation, attempt) of an RQ job id made by protocol.job_id, else None."""
    if not job_id.startswith("gen-") or "-a" not in job_id:
        return None
    generation, _, attempt = job_id[4:].partition("-a")
    return (int(generation), int(attempt)) if generation.isdigit() and attempt.isdigit() else None
