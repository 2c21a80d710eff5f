"""Position in line and ETA for waiting, dispatched and running generations.

Durations come from a cost model per template (`domain.estimate`: a fixed overhead plus a cost per
unit of work, frames × width × height), fitted on the template's recent successful runs, per worker
kind (GPU) where the kinds differ. The line is the dispatch policy's own order; it is laid onto the
workers serving each queue as their heartbeats describe them (busy until their job ends, idle, or
warming up), so a dispatched job knows which worker it waits for and behind which job."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from generations.broker.heartbeats import WorkerInfo
from generations.broker.heartbeats import workers as live_workers
from generations.domain.estimate import CostModel, Duration, Lane, Line, Run, by_kind, predict, remaining
from generations.domain.policy import held, positions
from generations.models import Generation, Worker, WorkflowTemplate
from generations.queue.line import load, pending_of
from generations.queue.selectors import NOT_SHOWN
from generations.queue.window import window_caps

S = Generation.Status
RECENT_RUNS = 20


@dataclass(frozen=True)
class Estimate:
    position: int  # in line within its queue (1 = next); 0 once dispatched or running
    start_in: float  # seconds from now (likely)
    done_in: float
    cold: bool  # the worker it waits for is warming up (or none runs yet: one must start)
    held: bool = False  # a burst window keeps a GPU free for filmmakers who have not started
    start_low: float = 0.0
    start_high: float = 0.0
    done_low: float = 0.0
    done_high: float = 0.0
    measured: bool = True  # False: too few runs of this template yet ("measuring…")
    worker: str = ""  # the worker expected to run it
    after: int | None = None  # the generation that worker finishes first

    @property
    def starts_now(self) -> bool:
        return self.after is None and not self.cold and self.start_high < 1


def work_units(params: dict[str, Any]) -> float:
    """How much work a generation is, for scaling measured durations: frames × width × height."""
    value = 1.0
    for name in ("frames", "width", "height"):
        if isinstance(params.get(name), int | float) and params[name] > 0:
            value *= float(params[name])
    return value


def runs_of(template: WorkflowTemplate) -> dict[str, list[Run]]:
    """The template's recent successful runs, by the GPU of the worker that ran them."""
    rows = list(
        Generation.objects.filter(
            template=template, status=S.SUCCEEDED, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at", "params", "worker")[:RECENT_RUNS]
    )
    kinds = dict(Worker.objects.filter(name__in={w for *_, w in rows}).values_list("name", "gpu"))
    runs: dict[str, list[Run]] = {}
    for started, finished, params, worker in rows:
        seconds = (finished - started).total_seconds()
        runs.setdefault(kinds.get(worker, ""), []).append(Run(work_units(params), seconds))
    return runs


Models = dict[int, dict[str, CostModel | None]]


def models_for(template: WorkflowTemplate, cache: Models) -> dict[str, CostModel | None]:
    if template.pk not in cache:
        cache[template.pk] = by_kind(runs_of(template))
    return cache[template.pk]


def predicted(template: WorkflowTemplate, params: dict[str, Any], cache: Models, kind: str = "") -> Duration:
    models = models_for(template, cache)
    model = models.get(kind) or models[""]
    return predict(model, work_units(params), fallback=float(template.estimated_seconds))


def duration(template: WorkflowTemplate, params: dict[str, Any], cache: Models) -> float:
    """The likely seconds a generation takes (the template's own estimate until runs are measured)."""
    return predicted(template, params, cache).seconds


def _by_kind(g: Generation, kinds: Iterable[str], cache: Models) -> dict[str, Duration]:
    return {kind: predicted(g.template, g.params, cache, kind) for kind in {"", *kinds}}


def estimates(conn: redis.Redis, *, only: Iterable[Generation] | None = None) -> dict[int, Estimate]:
    """Estimates for every queued, dispatched and running generation (optionally only `only`)."""
    active = list(
        Generation.objects.filter(status__in=(S.QUEUED, *Generation.IN_FLIGHT))
        .select_related("template")
        .defer(*NOT_SHOWN)  # the line is laid out on every change: no workflows (tens of kB each)
    )
    if not active:
        return {}
    try:
        workers = live_workers(conn)
    except redis.RedisError:
        workers = []
    waiting = [g for g in active if g.status == S.QUEUED]
    in_flight, finished = load()
    caps = window_caps(in_flight, finished, sum(w.state != "draining" for w in workers)) if waiting else {}
    pending = pending_of(waiting)
    order = positions(pending, in_flight, finished, caps)
    holding = held(pending, in_flight, finished, caps) if caps else set()
    wanted = {g.pk for g in only} if only is not None else None
    cache: Models = {}
    now = timezone.now()
    result: dict[int, Estimate] = {}
    for queue in sorted({g.template.queue for g in active}):
        members = [g for g in active if g.template.queue == queue]
        lanes = _lanes(queue, workers, members, cache, now)
        kinds = {lane.kind for lane in lanes}
        line = Line(lanes=list(lanes), cold_start=float(settings.COLD_START_SECONDS))
        by_name = {lane.name: lane for lane in line.lanes}
        for g in members:
            lane = by_name.get(_running_on(g, workers))
            if lane is None or g.status == S.QUEUED:
                continue
            own = predicted(g.template, g.params, cache, lane.kind)
            done = lane.free_in  # _lanes set it to what is left of this job
            result[g.pk] = Estimate(
                0, 0.0, done[0], cold=False, done_low=done[1], done_high=done[2],
                measured=own.measured, worker=lane.name,
            )  # fmt: skip
        # Dispatched jobs wait in RQ ahead of everything queued, in the order they were sent.
        sent = sorted(
            (g for g in members if g.pk not in result and g.status == S.DISPATCHED),
            key=lambda g: (g.dispatched_at or now, g.pk),
        )
        line_up = sent + sorted(
            (g for g in members if g.status == S.QUEUED), key=lambda g: (order.get(g.pk, 10**9), g.pk)
        )
        for g in line_up:
            slot = line.place(g.pk, _by_kind(g, kinds, cache))
            result[g.pk] = Estimate(
                position=order.get(g.pk, 0) if g.status == S.QUEUED else 0,
                start_in=slot.start,
                done_in=slot.done,
                cold=slot.warming,
                held=g.pk in holding,
                start_low=slot.start_low,
                start_high=slot.start_high,
                done_low=slot.done_low,
                done_high=slot.done_high,
                measured=slot.measured,
                worker=slot.lane,
                after=slot.after,
            )
    if wanted is not None:
        result = {pk: e for pk, e in result.items() if pk in wanted}
    return result


# Every progress event re-renders a running card, each with two queries for its template's recent runs;
# those change only when a generation finishes, so a process reads them again at most this often.
RECENT_MODELS_S = 10.0
_models: Models = {}
_models_read_at = 0.0


def _recent_models() -> Models:
    global _models, _models_read_at
    if time.monotonic() - _models_read_at > RECENT_MODELS_S:
        _models, _models_read_at = {}, time.monotonic()
    return _models


def running_estimates(generations: Iterable[Generation]) -> dict[int, Estimate]:
    """When running generations will be ready, without laying out the whole line: what a
    progress push needs (their template's model, their progress and time so far)."""
    now = timezone.now()
    result = {}
    for g in generations:
        if g.status != S.RUNNING:
            continue
        own = predicted(g.template, g.params, _recent_models())
        elapsed = (now - (g.started_at or now)).total_seconds()
        left, low, high = remaining(own, elapsed, g.progress)
        result[g.pk] = Estimate(
            0, 0.0, left, cold=False, done_low=low, done_high=high, measured=own.measured, worker=g.worker
        )
    return result


def _running_on(g: Generation, workers: list[WorkerInfo]) -> str:
    """The worker running `g`: the one its events named, else one whose heartbeat names it."""
    if g.status == S.RUNNING and g.worker:
        return g.worker
    return next((w.name for w in workers if w.generation_id == g.pk and w.attempt == g.attempt), "")


def _lanes(
    queue: str, workers: list[WorkerInfo], members: list[Generation], cache: Models, now: Any
) -> list[Lane]:
    """The workers serving `queue`, each free after what it runs now (or after warming up)."""
    cold = float(settings.COLD_START_SECONDS)
    lanes = {
        w.name: Lane(
            name=w.name,
            free_in=(cold, cold, cold) if w.state == "warming" else (0.0, 0.0, 0.0),
            warming=w.state == "warming",
            kind=w.gpu,
        )
        for w in workers
        if w.serves(queue) and w.state != "draining"
    }
    for g in members:
        lane = lanes.get(_running_on(g, workers)) if g.status != S.QUEUED else None
        if lane is None:
            continue
        own = predicted(g.template, g.params, cache, lane.kind)
        since = g.started_at or g.dispatched_at or now
        lane.free_in = remaining(own, (now - since).total_seconds(), g.progress if g.started_at else None)
        lane.last_job = g.pk
        lane.warming = False
    return list(lanes.values())
