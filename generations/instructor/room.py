"""The live room: everything the instructor watches during a round, read afresh for the page, each
HTMX answer and each push: the queue with positions and ETAs, what runs where, the filmmakers with
their counts and quotas, the workers, the spend, the burst window and the autoscaler's target."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import User
from generations.broker.connection import connection
from generations.broker.heartbeats import WorkerInfo, workers
from generations.fleet import autoscale
from generations.fleet.costs import spend_for
from generations.instructor.spotlight import spotlight_of
from generations.instructor.workshop import workshop_current
from generations.models import Generation, Round
from generations.queue import eta
from generations.queue.access import current_takes
from generations.queue.quota import Quota, quotas_for
from generations.queue.selectors import NOT_SHOWN
from generations.queue.snapshot import line_estimates
from generations.queue.window import seconds_left, window_of

S = Generation.Status


@dataclass(frozen=True)
class FilmmakerRow:
    user: User
    queued: int
    running: int
    done: int
    failed: int
    circled: int
    quota: Quota | None


@dataclass(frozen=True)
class WorkerRow:
    name: str
    state: str
    queues: tuple[str, ...]
    generation: Generation | None
    generation_id: int | None
    age: float
    provider: str
    gpu: str


def room_filmmakers(rnd: Round) -> list[FilmmakerRow]:
    """Everyone the round expects (its enrolled filmmakers, else every active filmmaker) and
    anyone who submitted in it, with their counts and quota left."""
    counts: dict[int, Counter[str]] = {}
    for owner_id, status, n in (
        Generation.objects.filter(round=rnd)
        .values("owner_id", "status")
        .annotate(n=Count("id"))
        .values_list("owner_id", "status", "n")
    ):
        counts.setdefault(owner_id, Counter())[status] = n
    circled = Counter(
        current_takes()
        .filter(generation__round=rnd, circled=True)
        .values_list("generation__owner_id", flat=True)
    )
    enrolled = list(rnd.filmmakers.values_list("pk", flat=True))
    expected = Q(pk__in=enrolled) if enrolled else Q(role=User.Role.FILMMAKER, is_active=True)
    people = list(User.objects.filter(expected | Q(pk__in=counts)).order_by("username"))
    quotas = quotas_for((u.pk for u in people if not u.is_instructor), rnd)
    rows = []
    for user in people:
        c = counts.get(user.pk, Counter())
        rows.append(
            FilmmakerRow(
                user=user,
                queued=c[S.QUEUED],
                running=c[S.DISPATCHED] + c[S.RUNNING],
                done=c[S.SUCCEEDED],
                failed=c[S.FAILED],
                circled=circled[user.pk],
                quota=quotas.get(user.pk),
            )
        )
    return rows


def room_workers(conn: redis.Redis) -> list[WorkerRow] | None:
    """The live GPU workers from their heartbeats (None when Redis does not answer)."""
    try:
        return worker_rows(workers(conn))
    except redis.RedisError:
        return None


def worker_rows(infos: list[WorkerInfo], known: dict[int, Generation] | None = None) -> list[WorkerRow]:
    """A row for each heartbeat, with the job it reports; `known`: jobs read already (the live room's
    in-flight ones), the others are read (with their owner and round)."""
    jobs = dict(known or {})
    ids = [w.generation_id for w in infos if w.generation_id and w.generation_id not in jobs]
    if ids:
        jobs.update({g.pk: g for g in Generation.objects.filter(pk__in=ids).select_related("owner", "round")})
    now = time.time()
    return [
        WorkerRow(
            name=w.name,
            state=w.state,
            queues=w.queues,
            generation=jobs.get(w.generation_id) if w.generation_id else None,
            generation_id=w.generation_id,
            age=w.age(now),
            provider=w.provider,
            gpu=w.gpu,
        )
        for w in infos
    ]


def _drain_seconds(estimates: dict[int, eta.Estimate], in_flight: list[Generation]) -> float:
    """Until the last queued job is done (eta's figures), else until the running ones are."""
    if estimates:
        return max(e.done_in for e in estimates.values())
    rates: eta.Models = {}
    now = timezone.now()
    left = [
        eta.duration(g.template, g.params, rates)
        - ((now - g.started_at).total_seconds() if g.started_at else 0)
        for g in in_flight
    ]
    return max([0.0, *left])


def room_state(rnd: Round) -> dict[str, Any]:
    """Everything the live room shows, read afresh (the page, an HTMX answer and each push)."""
    conn = connection()
    rnd.refresh_from_db()
    by_status = dict(
        Generation.objects.filter(round=rnd)
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    active = list(
        Generation.objects.filter(status__in=(S.QUEUED, *Generation.IN_FLIGHT))
        .select_related("owner", "template", "round")
        .defer(*NOT_SHOWN)
        .order_by("created_at")
    )
    try:
        estimates = line_estimates(conn)  # as published for the whole queue, not recomputed per render
    except redis.RedisError:
        estimates = {}
    queued = [g for g in active if g.status == S.QUEUED and g.round_id == rnd.pk]
    for g in queued:
        g.estimate = estimates.get(g.pk)  # type: ignore[attr-defined]
    queued.sort(key=lambda g: (g.estimate.position if g.estimate else 10**9, g.created_at))  # type: ignore[attr-defined]
    in_flight = [g for g in active if g.status in Generation.IN_FLIGHT]
    for g in in_flight:
        g.estimate = estimates.get(g.pk)  # type: ignore[attr-defined]
    finished = list(
        Generation.objects.filter(round=rnd, status__in=Generation.TERMINAL)
        .select_related("owner", "template")
        .defer(*NOT_SHOWN)
        .prefetch_related("takes")
        .order_by("-finished_at", "-pk")[:12]
    )
    workshop = workshop_current()
    filmmakers = room_filmmakers(rnd)
    try:
        heartbeats: list[WorkerInfo] | None = workers(conn)
    except redis.RedisError:
        heartbeats = None
    return {
        "round": rnd,
        "workshop": workshop,
        "counts": {s.value: by_status.get(s.value, 0) for s in S},
        "queued": queued,
        "running": [g for g in in_flight if g.round_id == rnd.pk],
        "elsewhere": sum(1 for g in active if g.round_id != rnd.pk),
        "finished": finished,
        "drain_seconds": _drain_seconds(estimates, in_flight),
        "workers": None if heartbeats is None else worker_rows(heartbeats, {g.pk: g for g in in_flight}),
        "filmmakers": filmmakers,
        "spend": spend_for(workshop),
        "spotlight": spotlight_of(workshop),
        "circled_count": sum(f.circled for f in filmmakers),
        "close_count": by_status.get(S.QUEUED, 0),
        "burst": _burst_state(rnd),
        "desired": autoscale.published(conn).get("video", 0),
        "target": _target(conn, active, heartbeats),
        "warm_default": max(len(filmmakers) // 2, 1),
    }


def _target(
    conn: redis.Redis, active: list[Generation], heartbeats: list[WorkerInfo] | None
) -> autoscale.Target | None:
    if heartbeats is None:
        return None  # Redis does not answer
    try:
        return autoscale.target_explained(conn, "video", active=active, heartbeats=heartbeats)
    except redis.RedisError:
        return None


def _burst_state(rnd: Round) -> dict[str, Any]:
    """The burst window as the live room shows it: open or not, seconds left, who has started."""
    window = window_of(rnd)
    left = seconds_left(rnd)
    if window is None or left <= 0:
        return {"open": False, "left": 0, "expected": 0, "started": 0}
    in_flight_or_done = set(
        Generation.objects.filter(round=rnd, owner_id__in=window.expected)
        .filter(status__in=(*Generation.IN_FLIGHT, S.SUCCEEDED))
        .values_list("owner_id", flat=True)
    )
    return {
        "open": True,
        "left": int(left),
        "expected": len(window.expected),
        "started": len(in_flight_or_done),
    }
