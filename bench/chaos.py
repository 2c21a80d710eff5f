#!/usr/bin/env python
"""Chaos: generations keep succeeding while workers, the conductor and Redis fail.

Runs N (40) generations on K (4) local synthetic workers (real daphne, conductor and gpu-worker
processes on PostgreSQL and Redis). Every 5 s a worker in the middle of a job has its whole
process group SIGKILLed (a host vanishing) and is started again; the conductor is killed and
restarted once; Redis is flushed once (a restart without persistence). Prints
generations succeeded, lost (failed or missing), duplicated takes and stuck ones.
Goal: all succeeded, 0 lost, 0 duplicates, 0 stuck.

Usage: .venv/bin/python bench/chaos.py   (env: CHAOS_N, CHAOS_WORKERS)
Prints a table, then one JSON line with the figures. The test suite runs a short version.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Seconds instead of the production defaults, so failures are noticed within a short run.
CHAOS_ENV = {
    "WORKER_LOST_AFTER": "4",
    "LOST_GRACE_SECONDS": "2",
    "GPU_WORKER_HEARTBEAT_S": "1",
    "MAX_ATTEMPTS": "10",
}


@dataclass
class Plan:
    generations: int = 40
    workers: int = 4
    kill_every: float = 5.0
    conductor_kill_at: float = 4.0
    redis_flush_at: float = 9.0
    frame_delay: float = 0.1
    timeout: float = 55.0
    seed: int = 7
    log: list[str] = field(default_factory=list)


def run_chaos(stack: Any, conn: Any, owner: Any, rnd: Any, template: Any, plan: Plan) -> dict[str, Any]:
    """Submit, disrupt, wait; returns the figures. `stack` is a tests.live.LiveStack not started yet."""
    from generations.models import Generation
    from generations.queue import services

    rng = random.Random(plan.seed)
    stack.env.update(CHAOS_ENV)
    stack.start_web()
    stack.start_conductor()
    names = [f"chaos-gpu-{i}" for i in range(1, plan.workers + 1)]
    for name in names:
        stack.start_worker(name, frame_delay=plan.frame_delay)
    params = {"prompt": "chaos", "seed": 1, "frames": 9, "width": 32, "height": 32, "fps": 12}
    ids = [
        services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params).pk
        for _ in range(plan.generations)
    ]
    start = time.monotonic()
    next_kill, conductor_down, flushed, kills = start + plan.kill_every, None, False, 0
    conductor_killed = False
    terminal = Generation.TERMINAL
    while time.monotonic() - start < plan.timeout:
        now = time.monotonic()
        left = Generation.objects.filter(pk__in=ids).exclude(status__in=terminal).count()
        if left == 0 and conductor_killed and conductor_down is None and flushed:
            break
        if now >= next_kill:
            # Prefer a worker in the middle of a job: that is the loss worth testing.
            busy = set(
                Generation.objects.filter(status=Generation.Status.RUNNING).values_list("worker", flat=True)
            )
            victim = rng.choice(sorted(busy & set(names)) or names)
            stack.kill(victim)
            stack.start_worker(victim, frame_delay=plan.frame_delay)
            kills += 1
            state = "mid-job" if victim in busy else "idle"
            plan.log.append(f"{now - start:5.1f}s killed ({state}) and restarted {victim}")
            next_kill = now + plan.kill_every
        if not conductor_killed and now - start >= plan.conductor_kill_at:
            stack.kill("conductor")
            conductor_down, conductor_killed = now, True
            plan.log.append(f"{now - start:5.1f}s killed the conductor")
        if conductor_down is not None and now - conductor_down >= 2:
            stack.start_conductor()
            conductor_down = None
            plan.log.append(f"{now - start:5.1f}s restarted the conductor")
        if not flushed and now - start >= plan.redis_flush_at:
            conn.flushdb()
            flushed = True
            plan.log.append(f"{now - start:5.1f}s flushed Redis")
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    rows = list(Generation.objects.filter(pk__in=ids).prefetch_related("takes"))
    succeeded = [g for g in rows if g.status == Generation.Status.SUCCEEDED]
    return {
        "generations": plan.generations,
        "workers": plan.workers,
        "worker_kills": kills,
        "succeeded": len(succeeded),
        "lost": plan.generations - len(succeeded) - sum(1 for g in rows if g.is_active),
        "duplicated_takes": sum(max(len(g.takes.all()) - 1, 0) for g in rows),
        "succeeded_without_take": sum(1 for g in succeeded if len(g.current_takes()) != 1),
        "stuck": sum(1 for g in rows if g.is_active),
        "redispatched": sum(1 for g in rows if g.attempt > 1),
        "max_attempt": max((g.attempt for g in rows), default=0),
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    from bench.common import live_stack, round_with_synthetic, setup

    conn = setup()
    from accounts.models import User

    plan = Plan(
        generations=int(os.environ.get("CHAOS_N", "40")), workers=int(os.environ.get("CHAOS_WORKERS", "4"))
    )
    owner = User.objects.create_user("chaos", password=None, role=User.Role.INSTRUCTOR)  # no quota
    rnd, template = round_with_synthetic("Chaos", quota=plan.generations)
    stack = live_stack("chaos")
    tmp = stack.logs.parent
    try:
        figures = run_chaos(stack, conn, owner, rnd, template, plan)
    finally:
        stack.stop()
    for line in plan.log:
        print(line)
    print(f"\n{'figure':<24}{'value':>10}")
    for key, value in figures.items():
        print(f"{key:<24}{value:>10}")
    ok = figures["succeeded"] == plan.generations and not (
        figures["lost"] or figures["duplicated_takes"] or figures["stuck"]
    )
    print(f"goal (all succeeded, 0 lost, 0 duplicates, 0 stuck): {'met' if ok else 'NOT met'}; logs in {tmp}")
    print(json.dumps({**figures, "goal_met": ok}))


if __name__ == "__main__":
    main()
