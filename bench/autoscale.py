#!/usr/bin/env python
"""The local provider following the autoscaler through a burst: from 0 workers up and back to 0.

Real daphne and conductor processes on PostgreSQL and Redis; the local provider starts and stops
real `gpu-worker run` processes (synthetic backend) to follow the conductor's published target.
A burst of generations arrives at once; the table shows, every half second, the target, the
workers running and the generations waiting, running and done.

Usage: .venv/bin/python bench/autoscale.py   (env: AUTOSCALE_JOBS, AUTOSCALE_MAX)
Prints the timeline, then one JSON line with the figures.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCALE_ENV = {
    "WORKERS_MIN": "0",
    "TARGET_WAIT_SECONDS": "2",
    "SCALE_DOWN_DELAY_SECONDS": "4",
    "GPU_WORKER_HEARTBEAT_S": "1",
}


def run_burst(
    stack: Any,
    conn: Any,
    owner: Any,
    rnd: Any,
    template: Any,
    *,
    jobs: int,
    max_workers: int,
    frame_delay: float = 0.15,
    timeout: float = 50.0,
) -> dict[str, Any]:
    """Submit `jobs` at once and follow the fleet until it is back to 0; `stack` is not started yet."""
    from generations.fleet import autoscale
    from generations.fleet.localfleet import LocalFleet
    from generations.models import Generation
    from generations.queue import services
    from tests.live import ROOT as REPO
    from tests.live import WORKER_PYTHON

    stack.env.update({**SCALE_ENV, "WORKERS_MAX": str(max_workers)})
    stack.start_web()
    stack.start_conductor()
    command = [
        WORKER_PYTHON,
        "-m",
        "gpu_worker",
        "run",
        "--queues",
        "video",
        "--backend",
        "synthetic",
        "--synthetic-frame-delay",
        str(frame_delay),
    ]
    env = dict(stack.env)
    if stack.redis_server is not None:
        # One enrolled host for all the workers the provider starts (as manage.py up --autoscale).
        credential = stack.enrol("local-fleet")
        env.update(REDIS_URL=credential["REDIS_URL"], JOB_VERIFY_KEY=credential["JOB_VERIFY_KEY"])
    local = LocalFleet(
        command, env, queue="video", max_workers=max_workers, cwd=str(REPO), log_dir=stack.logs
    )
    params = {"prompt": "burst", "seed": 1, "frames": 9, "width": 32, "height": 32, "fps": 12}
    timeline: list[dict[str, Any]] = []
    start = time.monotonic()
    try:
        ids = [
            services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params).pk
            for _ in range(jobs)
        ]
        while time.monotonic() - start < timeout:
            target = local.step(conn)
            counts = {
                s: Generation.objects.filter(pk__in=ids, status=s).count()
                for s in ("queued", "dispatched", "running", "succeeded")
            }
            timeline.append(
                {
                    "t": round(time.monotonic() - start, 1),
                    "target": target,
                    "workers": len(local.running()),
                    **counts,
                }
            )
            if (
                counts["succeeded"] == jobs
                and not local.running()
                and autoscale.published(conn).get("video") == 0
            ):
                break
            time.sleep(0.5)
    finally:
        local.stop_all()
    return {
        "jobs": jobs,
        "succeeded": timeline[-1]["succeeded"] if timeline else 0,
        "max_workers_seen": max((row["workers"] for row in timeline), default=0),
        "final_workers": timeline[-1]["workers"] if timeline else -1,
        "seconds": timeline[-1]["t"] if timeline else 0.0,
        "timeline": timeline,
    }


def main() -> None:
    from bench.common import live_stack, round_with_synthetic, setup

    setup()
    from accounts.models import User

    owner = User.objects.create_user("burst", password=None, role=User.Role.INSTRUCTOR)
    rnd, template = round_with_synthetic("Autoscale")
    stack = live_stack("autoscale")
    conn = stack.redis_server.admin()
    try:
        figures = run_burst(
            stack,
            conn,
            owner,
            rnd,
            template,
            jobs=int(os.environ.get("AUTOSCALE_JOBS", "12")),
            max_workers=int(os.environ.get("AUTOSCALE_MAX", "3")),
        )
    finally:
        stack.stop()
    print(f"{'t s':>6}{'target':>8}{'workers':>9}{'queued':>8}{'sent':>6}{'running':>9}{'done':>6}")
    last = None
    for row in figures["timeline"]:
        key = (
            row["target"],
            row["workers"],
            row["queued"],
            row["dispatched"],
            row["running"],
            row["succeeded"],
        )
        if key != last:  # only the moments something changed
            print(
                f"{row['t']:>6}{row['target']:>8}{row['workers']:>9}{row['queued']:>8}{row['dispatched']:>6}"
                f"{row['running']:>9}{row['succeeded']:>6}"
            )
            last = key
    summary = {k: v for k, v in figures.items() if k != "timeline"}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
