"""How long a job will take and when it will start: a cost model fitted on measured runs, and the
line of waiting jobs laid onto the workers that will run them.

Pure Python with no Django import: `generations.queue.eta` feeds it from the database and the
workers' heartbeats, and bench/eta.py runs the very same functions in virtual time.

The cost model is `seconds = overhead + per_unit × units` (units: frames × width × height), fitted by
least squares on a template's recent runs. A fixed overhead matters: a 9-frame 64² smoke test is
nearly all overhead (loading, encoding, uploading), and scaling it linearly to a 25-frame 256² job
predicts minutes for what takes seconds. Until the runs pin both terms down, the model says so
(`measured` is False) and the page shows "measuring…" rather than a number it cannot stand by.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MIN_RUNS = 3  # fewer measured runs than this: "measuring…"
# Runs whose work differs by less than this factor cannot separate overhead from per-unit cost.
MIN_SPREAD = 1.3
# A model fitted on one size of job is trusted this far from that size.
NARROW_REACH = 1.25
MIN_WIDTH = 0.10  # the shortest range shown is ±10 %
MEASURING_WIDTH = 0.6  # without a model, the prior is this uncertain either way


@dataclass(frozen=True)
class Run:
    """One measured run: its work units and the seconds it took from start to finish."""

    units: float
    seconds: float


@dataclass(frozen=True)
class CostModel:
    overhead: float  # seconds per job whatever its size
    per_unit: float  # seconds per unit of work
    width: float  # relative half-width of the range (from the residuals)
    runs: int
    low_units: float  # the work sizes it was fitted on
    high_units: float

    @property
    def narrow(self) -> bool:
        """Fitted on (nearly) one size of job: overhead and per-unit cost are not separated."""
        return self.high_units < self.low_units * MIN_SPREAD

    def covers(self, units: float) -> bool:
        if not self.narrow:
            return True
        return self.low_units / NARROW_REACH <= units <= self.high_units * NARROW_REACH

    def seconds(self, units: float) -> float:
        # A narrow model splits its typical time half and half (see `_least_squares`): a prior
        # that is trusted near the measured size only.
        return self.overhead + self.per_unit * units


@dataclass(frozen=True)
class Duration:
    """A predicted duration: the likely figure and a range; `measured` is False for a prior."""

    seconds: float
    low: float
    high: float
    measured: bool


def fit(runs: Sequence[Run], *, min_runs: int = MIN_RUNS) -> CostModel | None:
    """Least squares of seconds on units with both terms kept non-negative; runs far off the first
    fit (a cold start, a stall) are dropped once and the rest fitted again. None below `min_runs`."""
    usable = [r for r in runs if r.seconds > 0 and r.units > 0]
    if len(usable) < min_runs:
        return None
    overhead, per_unit = _least_squares(usable)
    residuals = [abs(r.seconds - (overhead + per_unit * r.units)) for r in usable]
    cut = 3 * max(statistics.median(residuals), 0.05 * statistics.median(r.seconds for r in usable))
    kept = [r for r, e in zip(usable, residuals, strict=True) if e <= cut]
    if len(kept) >= min_runs and len(kept) < len(usable):
        usable = kept
        overhead, per_unit = _least_squares(usable)
    relative = sorted(
        abs(r.seconds - (overhead + per_unit * r.units)) / max(overhead + per_unit * r.units, 1e-9)
        for r in usable
    )
    # The 80th percentile of the relative misses, widened while runs are few.
    p80 = relative[min(len(relative) - 1, int(0.8 * len(relative)))]
    width = max(MIN_WIDTH, p80 * (1 + 2 / len(usable)))
    return CostModel(
        overhead=overhead,
        per_unit=per_unit,
        width=width,
        runs=len(usable),
        low_units=min(r.units for r in usable),
        high_units=max(r.units for r in usable),
    )


def _least_squares(runs: Sequence[Run]) -> tuple[float, float]:
    n = len(runs)
    mean_x = sum(r.units for r in runs) / n
    mean_y = sum(r.seconds for r in runs) / n
    sxx = sum((r.units - mean_x) ** 2 for r in runs)
    if max(r.units for r in runs) < min(r.units for r in runs) * MIN_SPREAD or sxx == 0:
        # One size: the typical (median) time, split as `CostModel.seconds` assumes for a prior.
        median = statistics.median(r.seconds for r in runs)
        return median / 2, median / 2 / mean_x
    slope = sum((r.units - mean_x) * (r.seconds - mean_y) for r in runs) / sxx
    intercept = mean_y - slope * mean_x
    if slope < 0:  # bigger jobs were not slower: the size does not matter in what was seen
        return mean_y, 0.0
    if intercept < 0:  # no overhead seen: through the origin
        return 0.0, sum(r.units * r.seconds for r in runs) / sum(r.units**2 for r in runs)
    return intercept, slope


def predict(model: CostModel | None, units: float, *, fallback: float) -> Duration:
    """How long a job of `units` takes: from the model where it covers the job, else a prior
    (`fallback`: the template's own estimate, or the narrow model's guess) marked unmeasured."""
    if model is not None and model.covers(units):
        mid = max(model.seconds(units), 0.1)
        return Duration(mid, mid * max(1 - model.width, 0.3), mid * (1 + model.width), True)
    prior = model.seconds(units) if model is not None else fallback
    prior = max(prior, 0.1)
    return Duration(prior, prior * (1 - MEASURING_WIDTH), prior * (1 + MEASURING_WIDTH), False)


# --- The line, laid onto the workers -----------------------------------------------------------


@dataclass
class Lane:
    """A worker that serves the queue: when it can take its next job, and what it does until then."""

    name: str
    free_in: tuple[float, float, float]  # seconds until free: (likely, soonest, latest)
    last_job: int | None = None  # the job it runs or was given last (the one a next job waits for)
    warming: bool = False  # starting up: no job until its backend answers
    kind: str = ""  # the worker's GPU, for per-kind models


@dataclass(frozen=True)
class Slot:
    """Where and when a waiting job is expected to run."""

    start: float
    start_low: float
    start_high: float
    done: float
    done_low: float
    done_high: float
    lane: str
    after: int | None  # the job that lane finishes first
    warming: bool  # that lane is still warming up
    measured: bool


@dataclass
class Line:
    """Lays jobs in dispatch order onto the lanes: each goes to the worker free soonest, as RQ's
    workers pull. With no lane at all, one is assumed to arrive after `cold_start` (the autoscaler
    starts one)."""

    lanes: list[Lane]
    cold_start: float
    durations: Mapping[str, Duration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.lanes:
            c = self.cold_start
            self.lanes = [Lane(name="", free_in=(c, c, c), warming=True)]

    def place(self, job_id: int, duration: Duration | Mapping[str, Duration]) -> Slot:
        """Give the job to the lane free soonest. `duration` may differ by the lanes' kinds."""
        lane = min(self.lanes, key=lambda lane: (lane.free_in[0], lane.name))
        own = duration if isinstance(duration, Duration) else duration.get(lane.kind, duration[""])
        start, low, high = lane.free_in
        slot = Slot(
            start=start,
            start_low=low,
            start_high=high,
            done=start + own.seconds,
            done_low=low + own.low,
            done_high=high + own.high,
            lane=lane.name,
            after=lane.last_job,
            warming=lane.warming,
            measured=own.measured,
        )
        lane.free_in = (slot.done, slot.done_low, slot.done_high)
        lane.last_job = job_id
        return slot


def remaining(
    duration: Duration, elapsed: float, progress: float | None = None
) -> tuple[float, float, float]:
    """(likely, soonest, latest) seconds left of a running job. Past a fifth of the way its own
    progress says more than the model; a job over its prediction is given a little more time."""
    if progress is not None and 20 <= progress < 100 and elapsed > 0:
        left = elapsed * (100 - progress) / progress
        return left, left * 0.8, left * 1.25
    floor = 0.05 * duration.seconds
    return (
        max(duration.seconds - elapsed, floor),
        max(duration.low - elapsed, 0.0),
        max(duration.high - elapsed, floor),
    )


def by_kind(runs: Mapping[str, Sequence[Run]], *, min_runs: int = MIN_RUNS) -> dict[str, CostModel | None]:
    """A model per worker kind where that kind has enough runs of its own, and "" for all runs
    together (what a kind without its own model, or an unknown worker, is predicted by)."""
    pooled = [r for kind_runs in runs.values() for r in kind_runs]
    models: dict[str, CostModel | None] = {"": fit(pooled, min_runs=min_runs)}
    if len([k for k, v in runs.items() if v]) > 1:
        for kind, kind_runs in runs.items():
            if kind and (model := fit(kind_runs, min_runs=min_runs)) is not None:
                models[kind] = model
    return models
