"""The capacity planner: from a workshop's shape to containers, GPU-hours, cost, and the wait for
the last filmmaker's first take (simulated with the conductor's own policy)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .policy import plan
from .simulate import all_at_once, simulate


@dataclass(frozen=True)
class Shape:
    filmmakers: int = 20
    rounds: int = 5
    per_round: int = 6  # generations per filmmaker per round
    minutes_per_job: float = 4.0
    round_minutes: float = 30.0  # how long a round's generating lasts
    price_per_hour: float = 3.0
    billing_seconds: int = 1
    cold_start_s: float = 60.0


@dataclass(frozen=True)
class Plan:
    jobs: int
    gpu_hours: float
    containers: int
    jobs_per_gpu_hour: float
    cost: float
    last_first_take_min: float  # simulated, one round's burst on `containers` workers
    median_first_take_min: float


def capacity(shape: Shape) -> Plan:
    jobs = shape.filmmakers * shape.rounds * shape.per_round
    gpu_hours = jobs * shape.minutes_per_job / 60
    per_round_work = shape.filmmakers * shape.per_round * shape.minutes_per_job
    containers = max(1, math.ceil(per_round_work / shape.round_minutes))
    # Each container is billed for the rounds' length, rounded up to its granularity.
    seconds = shape.rounds * shape.round_minutes * 60
    billed = math.ceil(seconds / shape.billing_seconds) * shape.billing_seconds
    cost = containers * billed / 3600 * shape.price_per_hour
    one_round = all_at_once(
        shape.filmmakers,
        shape.per_round,
        job_time=shape.minutes_per_job * 60,
        jitter=0.25,
        rng=random.Random(1),
    )
    run = simulate(one_round, {"video": containers}, plan, cold_start=shape.cold_start_s, pass_delay=0.15)
    figures = run.summary()
    return Plan(
        jobs=jobs,
        gpu_hours=round(gpu_hours, 1),
        containers=containers,
        jobs_per_gpu_hour=round(60 / shape.minutes_per_job, 1),
        cost=round(cost, 2),
        last_first_take_min=round(figures["first_max"] / 60, 1),
        median_first_take_min=round(figures["first_median"] / 60, 1),
    )
