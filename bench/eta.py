#!/usr/bin/env python
"""How well the job cards' ETAs hold over a simulated workshop day: predicted against actual start and
finish, the estimator before this change and after.

A day in virtual time (generations.domain.simulate, the conductor's own policy.plan): 20 filmmakers, 6 GPU
workers on one queue, each worker's first job 60 s longer (loading the model). At 9:00 the instructor
runs one smoke test (9 frames at 256x256, the issue's morning); then six rounds an hour apart, each
opened with a burst (everyone presses within a minute) and followed by iterations (a next take every
3 minutes or so), 4 to 8 takes per filmmaker, at 49 to 121 frames and 768x448 to 1280x704.
A job's true duration is 12 s of overhead + 7e-7 s per frame x pixel, with log-normal noise (sigma 0.12);
running jobs report progress as a worker does (nothing during the first half of the overhead, then
linear).

At each submission both estimators see what the web app sees (finished runs, what runs where and since
when, with its progress, the idle and warming workers, the line in the policy's order) and predict the new
job's start and finish:
  before  today's generations/queue/eta.py: the rolling median of seconds per frame x pixel over the
          last 20 runs, scaled linearly; start = cold start if no worker is warm + (work left in flight
          + work ahead) / workers.
  after   generations.domain.estimate (what generations/queue/eta.py runs now): overhead + per-unit cost
          fitted on the last 20 runs, the line laid onto the workers; "measuring…" (and the template's
          own estimate, 120 s) until the runs pin the model down.
Errors are absolute, in seconds, over every job of the day; "measured" counts only the jobs the new
estimator gave a figure for (the others showed "measuring…").

Goal: over the day the new estimator at least halves the median error of the predicted finish and makes
no p90 worse (start and finish); in the first round (the morning the issue saw, after one tiny smoke test)
it cuts the p90 finish error at least tenfold. The day's p90 is bounded by what no estimator of the
present can know: fair share lets a filmmaker who submits later overtake a job already waiting. "in
range" is the share of jobs whose actual finish fell within the range the card showed.

Usage: .venv/bin/python bench/eta.py   Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generations.domain.estimate import Lane, Line, Run, fit, predict, remaining  # noqa: E402
from generations.domain.policy import order, plan  # noqa: E402
from generations.domain.simulate import Job, Snapshot, simulate  # noqa: E402

SEED = 20261201
FILMMAKERS = 20
WORKERS = 6
COLD_START = 60.0
PASS_DELAY = 0.15
OVERHEAD = 12.0
PER_UNIT = 7e-7
NOISE = 0.12
ROUNDS = 6
ROUND_GAP = 3600.0
FIRST_ROUND = 600.0
TEMPLATE_ESTIMATE = 120.0  # the template's own estimated_seconds, before any run
RECENT = 20  # runs both estimators look at
FRAMES = (49, 73, 97, 121)
SIZES = ((768, 448), (1024, 576), (1280, 704))


def true_seconds(units: float, rng: random.Random) -> float:
    return (OVERHEAD + PER_UNIT * units) * math.exp(rng.gauss(0, NOISE))


def day(rng: random.Random) -> tuple[list[Job], dict[int, float]]:
    """The day's jobs and each one's work units (frames x width x height)."""
    jobs: list[Job] = []
    units: dict[int, float] = {}

    def add(owner: int, at: float, frames: int, size: tuple[int, int], round_id: int) -> None:
        job_id = len(jobs) + 1
        units[job_id] = float(frames * size[0] * size[1])
        jobs.append(Job(job_id, owner, at, true_seconds(units[job_id], rng), round_id=round_id))

    add(0, 0.0, 9, (256, 256), 0)  # the instructor's smoke test
    for r in range(ROUNDS):
        opened = FIRST_ROUND + r * ROUND_GAP
        for owner in range(1, FILMMAKERS + 1):
            at = opened + rng.uniform(0, 60)
            frames, size = rng.choice(FRAMES), rng.choice(SIZES)
            for _ in range(rng.randint(4, 8)):
                add(owner, at, frames, size, r + 1)
                at += rng.expovariate(1 / 180)
                if rng.random() < 0.4:  # now and then another length or size
                    frames, size = rng.choice(FRAMES), rng.choice(SIZES)
    jobs.sort(key=lambda j: (j.submitted_at, j.id))
    return jobs, units


class Observer:
    """Both estimators' predictions for each job as it arrives."""

    def __init__(self, jobs: Sequence[Job], units: dict[int, float]) -> None:
        self.by_id = {j.id: j for j in jobs}
        self.units = units
        self.before: dict[int, tuple[float, float]] = {}
        self.after: dict[int, tuple[float, float, bool]] = {}
        self.ranges: dict[int, tuple[float, float]] = {}  # the finish range the card shows

    def runs(self, snap: Snapshot) -> list[tuple[float, float]]:
        """(units, seconds) of the last RECENT finished runs, newest first."""
        recent = sorted(snap.done, key=lambda d: d[2], reverse=True)[:RECENT]
        return [(self.units[job_id], finished - started) for job_id, started, finished in recent]

    def progress(self, job_id: int, elapsed: float) -> float:
        """What a worker reports: nothing in the first half of the overhead, then linear."""
        total = self.by_id[job_id].duration
        quiet = OVERHEAD / 2
        return min(max(elapsed - quiet, 0.0) / max(total - quiet, 1e-9) * 100, 99.0)

    def __call__(self, job: Job, snap: Snapshot) -> None:
        line = [p for p in order(snap.pending, snap.in_flight, snap.finished)]
        ahead = [p.id for p in line[: [p.id for p in line].index(job.id)]]
        runs = self.runs(snap)
        self.before[job.id] = self.old(job, snap, runs, ahead)
        self.after[job.id] = self.new(job, snap, runs, ahead)

    def old(
        self, job: Job, snap: Snapshot, runs: list[tuple[float, float]], ahead: list[int]
    ) -> tuple[float, float]:
        rates = [seconds / units for units, seconds in runs]
        rate = statistics.median(rates) if rates else None

        def duration(job_id: int) -> float:
            return rate * self.units[job_id] if rate else TEMPLATE_ESTIMATE

        # Today's code adds the cold start when no worker is idle or busy. A worker that has not run its
        # first job yet is warming (loading the model) in this day, for both estimators.
        warm = bool(snap.idle_warm.get("video")) or bool(snap.running)
        cold = 0.0 if warm else COLD_START
        busy = sum(
            max(duration(j) - (snap.now - started), 0.0) for j, (_, _, started) in snap.running.items()
        )
        wait = sum(duration(j) for j in ahead)
        start = cold + (busy + wait) / WORKERS
        return snap.now + start, snap.now + start + duration(job.id)

    def new(
        self, job: Job, snap: Snapshot, runs: list[tuple[float, float]], ahead: list[int]
    ) -> tuple[float, float, bool]:
        model = fit([Run(u, s) for u, s in runs])
        lanes: dict[int, Lane] = {}
        for w in snap.idle_warm.get("video", []):
            lanes[w] = Lane(str(w), (0.0, 0.0, 0.0))
        for w in snap.idle_cold.get("video", []):
            lanes[w] = Lane(str(w), (COLD_START, COLD_START, COLD_START), warming=True)
        for job_id, (_, worker, started) in snap.running.items():
            elapsed = snap.now - started
            own = predict(model, self.units[job_id], fallback=TEMPLATE_ESTIMATE)
            lanes[worker] = Lane(str(worker), remaining(own, elapsed, self.progress(job_id, elapsed)), job_id)
        placed = Line(lanes=list(lanes.values()), cold_start=COLD_START)
        for job_id in ahead:
            placed.place(job_id, predict(model, self.units[job_id], fallback=TEMPLATE_ESTIMATE))
        own = predict(model, self.units[job.id], fallback=TEMPLATE_ESTIMATE)
        slot = placed.place(job.id, own)
        self.ranges[job.id] = (snap.now + slot.done_low, snap.now + slot.done_high)
        return snap.now + slot.start, snap.now + slot.done, own.measured


def stats(errors: list[float]) -> dict[str, float]:
    ordered = sorted(errors)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "n": len(ordered),
    }


def main() -> None:
    rng = random.Random(SEED)
    jobs, units = day(rng)
    observer = Observer(jobs, units)
    run = simulate(
        jobs, {"video": WORKERS}, plan, cold_start=COLD_START, pass_delay=PASS_DELAY, observe=observer
    )
    ids = [j.id for j in jobs]
    first_round = [j.id for j in jobs if j.round_id <= 1]
    measured = [i for i in ids if observer.after[i][2]]

    def errors(which: str, part: int, subset: list[int]) -> list[float]:
        predictions = observer.before if which == "before" else observer.after
        actual = run.started if part == 0 else run.finished
        return [abs(predictions[i][part] - actual[i]) for i in subset]

    figures: dict[str, dict[str, dict[str, float]]] = {}
    for label, subset in (("day", ids), ("first_round", first_round), ("measured", measured)):
        figures[label] = {
            f"{which}_{part_name}": stats(errors(which, part, subset))
            for which in ("before", "after")
            for part, part_name in ((0, "start"), (1, "finish"))
        }
    print(f"ETA accuracy over a simulated day: {len(jobs)} jobs, {FILMMAKERS} filmmakers, {WORKERS} workers")
    head = ("jobs", "", "estimator", "start median", "start p90", "finish median", "finish p90")
    print("{:<13}{:>2}{:<11}{:>14}{:>11}{:>15}{:>12}".format(*head))
    for label, rows in figures.items():
        for which in ("before", "after"):
            s, f = rows[f"{which}_start"], rows[f"{which}_finish"]
            print(
                f"{label:<13}{'':>2}{which:<11}{s['median']:>12.1f} s{s['p90']:>9.1f} s"
                f"{f['median']:>13.1f} s{f['p90']:>10.1f} s   (n={s['n']})"
            )
    share = len(measured) / len(ids)
    print(f"'measuring…' shown for {len(ids) - len(measured)} of {len(ids)} jobs ({1 - share:.1%})")
    inside = sum(observer.ranges[i][0] <= run.finished[i] <= observer.ranges[i][1] for i in measured)
    in_range = round(inside / max(len(measured), 1), 3)
    print(f"actual finish within the range shown: {in_range:.1%} of the measured jobs")
    d, m = figures["day"], figures["first_round"]
    goal = (
        d["after_finish"]["median"] <= 0.5 * d["before_finish"]["median"]
        and d["after_finish"]["p90"] <= d["before_finish"]["p90"]
        and d["after_start"]["p90"] <= d["before_start"]["p90"]
        and m["after_finish"]["p90"] <= 0.1 * m["before_finish"]["p90"]
    )
    summary = {"jobs": len(jobs), "measuring_share": round(1 - share, 3), "in_range": in_range}
    print(json.dumps({**summary, **figures, "goal_met": goal}))


if __name__ == "__main__":
    main()
