"""How many GPU workers each queue should have now, published for the providers to follow.

The target: every filmmaker's next take within TARGET_WAIT_SECONDS. The work waiting (the rest
of what runs, plus what is queued, in measured durations) spread over that wait gives a count,
at least one per filmmaker waiting while that fits within the maximum, never below an instructor's
"warm N now", bounded by min and max. A lower figure is published only once it has held for
SCALE_DOWN_DELAY_SECONDS, so a pause in the burst does not drop warm GPUs."""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.utils import timezone

from generations.broker.heartbeats import WorkerInfo, workers
from generations.models import Generation
from generations.queue import eta
from generations.queue.selectors import NOT_SHOWN

DESIRED_KEY = "workshop:desired"
WARM_KEY = "workshop:warm:{queue}"
S = Generation.Status


def raw_target(queue: str) -> tuple[int, float]:
    """(workers wanted now before bounds and delay, seconds of work waiting) for one queue."""
    by_wait, owners, work = _demand(queue)
    return (max(by_wait, owners), work) if work > 0 else (0, 0.0)


def _demand(queue: str, active: Iterable[Generation] | None = None) -> tuple[int, int, float]:
    """(workers to finish the work within TARGET_WAIT_SECONDS, filmmakers waiting, seconds of work).
    `active`: every waiting and in-flight generation with its template, when read already (the live
    room reads them for its own lists)."""
    now = timezone.now()
    rates: eta.Models = {}
    work = 0.0
    waiting_owners: set[int] = set()
    if active is None:
        active = (
            Generation.objects.filter(status__in=(S.QUEUED, *Generation.IN_FLIGHT), template__queue=queue)
            .select_related("template")
            .defer(*NOT_SHOWN)
        )  # each conductor pass: no workflows
    for g in active:
        if g.template.queue != queue or g.status not in (S.QUEUED, *Generation.IN_FLIGHT):
            continue
        own = eta.duration(g.template, g.params, rates)
        if g.status == S.RUNNING and g.started_at:
            own = max(own - (now - g.started_at).total_seconds(), 0.0)
        work += own
        if g.status == S.QUEUED:
            waiting_owners.add(g.owner_id)
    if work <= 0:
        return 0, len(waiting_owners), 0.0
    return math.ceil(work / max(settings.TARGET_WAIT_SECONDS, 1)), len(waiting_owners), work


def warm_floor(conn: redis.Redis, queue: str) -> int:
    raw = conn.get(WARM_KEY.format(queue=queue))
    return int(raw) if raw else 0


def warm_now(conn: redis.Redis, *, queue: str, workers: int, minutes: int = 15) -> None:
    """The instructor's "warm N workers now" before a demo: a floor that lasts `minutes`."""
    conn.set(WARM_KEY.format(queue=queue), int(workers), ex=minutes * 60)


@dataclass
class Autoscaler:
    """Kept by the conductor across passes: the recent raw targets, for the scale-down delay."""

    history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def desired(self, conn: redis.Redis, queue: str, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        raw, _ = raw_target(queue)
        raw = max(raw, warm_floor(conn, queue))
        bounded = min(max(raw, settings.WORKERS_MIN), settings.WORKERS_MAX)
        recent = self.history.setdefault(queue, deque())
        recent.append((now, bounded))
        while recent and recent[0][0] < now - settings.SCALE_DOWN_DELAY_SECONDS:
            recent.popleft()
        # Up at once; down only to the highest target of the delay window.
        return max(n for _, n in recent)

    def publish(self, conn: redis.Redis, queues: list[str]) -> dict[str, int]:
        figures = {q: self.desired(conn, q) for q in queues}
        conn.set(DESIRED_KEY, json.dumps({"ts": time.time(), "queues": figures}))
        return figures


@dataclass(frozen=True)
class Target:
    """The autoscaler's target for a queue, with what it is made of, for the live room."""

    wanted: int  # what the conductor published last (what the providers follow)
    running: int  # workers heartbeating on the queue now
    waiting_filmmakers: int  # one GPU each, so nobody waits behind another's batch
    for_the_work: int  # to finish the queued and running work within TARGET_WAIT_SECONDS
    warm: int  # an instructor's "warm N now" floor (0 when none)
    warm_minutes_left: int
    held: bool  # higher than the demand now: kept until SCALE_DOWN_DELAY_SECONDS has passed

    def reasons(self) -> list[str]:
        parts = []
        if self.waiting_filmmakers:
            n = self.waiting_filmmakers
            parts.append(f"{n} waiting filmmaker{'s' if n != 1 else ''} (one GPU each)")
        if self.for_the_work > self.waiting_filmmakers:
            minutes = max(round(settings.TARGET_WAIT_SECONDS / 60), 1)
            parts.append(f"{self.for_the_work} to clear the queued work within {minutes} min")
        if self.warm:
            parts.append(f"{self.warm} warm for {self.warm_minutes_left} more min")
        if self.wanted == settings.WORKERS_MAX and self.wanted < max(
            self.waiting_filmmakers, self.for_the_work
        ):
            parts.append(f"capped at WORKERS_MAX {settings.WORKERS_MAX}")
        if self.wanted and settings.WORKERS_MIN and self.wanted == settings.WORKERS_MIN and not parts:
            parts.append(f"WORKERS_MIN {settings.WORKERS_MIN}")
        if self.held:
            parts.append(
                f"kept up for {round(settings.SCALE_DOWN_DELAY_SECONDS / 60)} min after the last demand"
            )
        return parts


def target_explained(
    conn: redis.Redis,
    queue: str,
    *,
    active: Iterable[Generation] | None = None,
    heartbeats: list[WorkerInfo] | None = None,
) -> Target:
    """Why the autoscaler wants what it wants for `queue`: the live room's explanation. `active`
    (as for _demand) and the workers' `heartbeats`, when the caller has read them already."""
    by_wait, owners, _ = _demand(queue, active)
    ttl = conn.ttl(WARM_KEY.format(queue=queue))
    wanted = published(conn).get(queue, 0)
    now_wanted = min(
        max(by_wait, owners, warm_floor(conn, queue), settings.WORKERS_MIN), settings.WORKERS_MAX
    )
    return Target(
        wanted=wanted,
        running=sum(
            1
            for w in (workers(conn) if heartbeats is None else heartbeats)
            if w.serves(queue) and w.state != "draining"
        ),
        waiting_filmmakers=owners,
        for_the_work=by_wait,
        warm=warm_floor(conn, queue),
        warm_minutes_left=max(round(ttl / 60), 1) if ttl and ttl > 0 else 0,
        held=wanted > now_wanted,
    )


def published(conn: redis.Redis) -> dict[str, int]:
    """What the conductor last published (empty when it has not run)."""
    raw = conn.get(DESIRED_KEY)
    return json.loads(raw)["queues"] if raw else {}
