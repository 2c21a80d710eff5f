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
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.utils import timezone

from generations.models import Generation
from generations.queue import eta

DESIRED_KEY = "workshop:desired"
WARM_KEY = "workshop:warm:{queue}"
S = Generation.Status


def raw_target(queue: str) -> tuple[int, float]:
    """(workers wanted now before bounds and delay, seconds of work waiting) for one queue."""
    now = timezone.now()
    rates: eta.Models = {}
    work = 0.0
    waiting_owners: set[int] = set()
    for g in Generation.objects.filter(
        status__in=(S.QUEUED, *Generation.IN_FLIGHT), template__queue=queue
    ).select_related("template"):
        own = eta.duration(g.template, g.params, rates)
        if g.status == S.RUNNING and g.started_at:
            own = max(own - (now - g.started_at).total_seconds(), 0.0)
        work += own
        if g.status == S.QUEUED:
            waiting_owners.add(g.owner_id)
    if work <= 0:
        return 0, 0.0
    by_wait = math.ceil(work / max(settings.TARGET_WAIT_SECONDS, 1))
    return max(by_wait, len(waiting_owners)), work


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


def published(conn: redis.Redis) -> dict[str, int]:
    """What the conductor last published (empty when it has not run)."""
    raw = conn.get(DESIRED_KEY)
    return json.loads(raw)["queues"] if raw else {}
