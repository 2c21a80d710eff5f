"""Position in line and ETA for waiting generations.

Durations come from measured runs: the rolling median, per template, of recent successful
runs' GPU seconds per unit of work (frames × width × height, whichever the parameters have),
scaled by this generation's work units. The line is the dispatch policy's own order."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from generations.broker.heartbeats import workers as live_workers
from generations.domain.policy import held, positions
from generations.models import Generation, WorkflowTemplate
from generations.queue.line import load, pending_of
from generations.queue.window import window_caps

S = Generation.Status
RECENT_RUNS = 20


@dataclass(frozen=True)
class Estimate:
    position: int
    start_in: float  # seconds from now
    done_in: float
    cold: bool  # no warm worker serves the queue: a cold start is included
    held: bool = False  # a burst window keeps a GPU free for filmmakers who have not started


def work_units(params: dict[str, Any]) -> float:
    """How much work a generation is, for scaling measured durations: frames × width × height."""
    value = 1.0
    for name in ("frames", "width", "height"):
        if isinstance(params.get(name), int | float) and params[name] > 0:
            value *= float(params[name])
    return value


def seconds_per_unit(template: WorkflowTemplate) -> float | None:
    runs = (
        Generation.objects.filter(template=template, status=S.SUCCEEDED, started_at__isnull=False)
        .annotate(took=F("finished_at") - F("started_at"))
        .order_by("-finished_at")
        .values_list("took", "params")[:RECENT_RUNS]
    )
    rates = [took.total_seconds() / work_units(params) for took, params in runs if took is not None]
    return statistics.median(rates) if rates else None


def duration(template: WorkflowTemplate, params: dict[str, Any], rates: dict[int, float | None]) -> float:
    if template.pk not in rates:
        rates[template.pk] = seconds_per_unit(template)
    rate = rates[template.pk]
    return rate * work_units(params) if rate else float(template.estimated_seconds)


def estimates(conn: redis.Redis, *, queued: list[Generation] | None = None) -> dict[int, Estimate]:
    """Estimates for every queued generation (optionally only those in `queued`)."""
    waiting = list(Generation.objects.filter(status=S.QUEUED).select_related("template"))
    if not waiting:
        return {}
    in_flight_rows = list(
        Generation.objects.filter(status__in=Generation.IN_FLIGHT).select_related("template")
    )
    in_flight, finished = load()
    try:
        workers = live_workers(conn)
    except redis.RedisError:
        workers = []
    caps = window_caps(in_flight, finished, sum(w.state != "draining" for w in workers))
    pending = pending_of(waiting)
    order = positions(pending, in_flight, finished, caps)
    holding = held(pending, in_flight, finished, caps) if caps else set()
    rates: dict[int, float | None] = {}
    now = timezone.now()
    by_queue: dict[str, list[Generation]] = {}
    for g in waiting:
        by_queue.setdefault(g.template.queue, []).append(g)
    wanted = {g.pk for g in queued} if queued is not None else None
    result: dict[int, Estimate] = {}
    for queue, members in by_queue.items():
        serving = [w for w in workers if w.serves(queue) and w.state != "draining"]
        warm = any(w.state in ("idle", "busy", "delivering") for w in serving)
        lanes = max(len(serving), 1)
        cold = 0.0 if warm else float(settings.COLD_START_SECONDS)
        busy = 0.0
        for g in in_flight_rows:
            if g.template.queue == queue:
                elapsed = (now - g.started_at).total_seconds() if g.started_at else 0.0
                busy += max(duration(g.template, g.params, rates) - elapsed, 0.0)
        members.sort(key=lambda g: order[g.pk])
        ahead = 0.0
        for g in members:
            own = duration(g.template, g.params, rates)
            if wanted is None or g.pk in wanted:
                start = cold + (busy + ahead) / lanes
                result[g.pk] = Estimate(
                    order[g.pk], start, start + own, cold=bool(cold), held=g.pk in holding
                )
            ahead += own
    return result
