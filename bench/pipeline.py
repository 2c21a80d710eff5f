#!/usr/bin/env python
"""Per-job overhead of the generation path, on loopback, with real processes.

Runs daphne, the conductor and one gpu-worker (synthetic backend, near-zero jobs:
one 32x32 frame) against PostgreSQL and Redis, submits N jobs one after another and
measures for each, from the worker's and the conductor's timestamps and a WebSocket
client watching the filmmaker's page:

  submit -> worker start     the service call that creates the generation, to the
                             worker's "started" event (conductor wake, dispatch, RQ, fork)
  worker finish -> visible   the backend's last progress event, to the succeeded job card
                             arriving on the page's WebSocket (upload, probe, event,
                             conductor apply, channel layer, render)

Usage: .venv/bin/python bench/pipeline.py   (env: BENCH_JOBS, DATABASE_URL, REDIS_URL)
Prints a table, then one JSON line with the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
JOBS = int(os.environ.get("BENCH_JOBS", "20"))
WARMUP = 2


class PageWatcher(threading.Thread):
    """A filmmaker's open page: records when each job card arrives as succeeded."""

    def __init__(self, url: str, session_key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.session_key = url, session_key
        self.succeeded_at: dict[int, float] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        import re

        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        pattern = re.compile(r'id="gen-(\d+)" class="card status-succeeded"')
        origin = "http://" + self.url.split("://", 1)[1].split("/", 1)[0]
        headers = {"Cookie": f"sessionid={self.session_key}"}
        with connect(self.url, origin=origin, additional_headers=headers) as ws:
            self.ready.set()
            while not self.stop.is_set():
                try:
                    message = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                except ConnectionClosed:
                    return
                now = time.time()
                for gid in pattern.findall(str(message)):
                    self.succeeded_at.setdefault(int(gid), now)


def main() -> None:
    from bench.common import live_stack, round_with_synthetic, setup

    conn = setup()
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import User
    from generations.models import Generation
    from generations.queue import services
    from gpu_worker import protocol

    owner = User.objects.create_user("bench", password=None)
    rnd, template = round_with_synthetic("Bench", quota=JOBS + WARMUP)
    session = SessionStore()
    session["_auth_user_id"] = str(owner.pk)
    session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
    session["_auth_user_hash"] = owner.get_session_auth_hash()
    session.create()
    stack = live_stack("pipeline")
    rows: list[dict[str, float]] = []
    try:
        stack.start_web()
        stack.start_conductor()
        stack.start_worker("bench-gpu-1")
        watcher = PageWatcher(f"ws://127.0.0.1:{stack.port}/ws/rounds/{rnd.pk}/", session.session_key)
        watcher.start()
        assert watcher.ready.wait(10), "the page's WebSocket did not connect"
        params = {"prompt": "bench", "seed": 1, "frames": 1, "width": 32, "height": 32, "fps": 12}
        for i in range(WARMUP + JOBS):
            submitted = time.time()
            g = services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params)
            deadline = time.monotonic() + 30
            while g.pk not in watcher.succeeded_at:
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {g.pk} did not finish in 30 s; logs in {stack.logs}")
                time.sleep(0.002)
            g.refresh_from_db()
            assert g.status == Generation.Status.SUCCEEDED and g.takes.count() == 1
            events = [json.loads(f[b"data"]) for _id, f in conn.xrange(protocol.EVENTS_STREAM)]
            mine = [e for e in events if e.get("generation_id") == g.pk]
            started = next(e["ts"] for e in mine if e["type"] == "started")
            finished = max(e["ts"] for e in mine if e["type"] == "progress")
            delivered = next(e["ts"] for e in mine if e["type"] == "succeeded")
            applied = g.finished_at.timestamp()
            if i >= WARMUP:
                rows.append(
                    {
                        "submit_to_start": started - submitted,
                        "finish_to_visible": watcher.succeeded_at[g.pk] - finished,
                        "  upload": delivered - finished,
                        "  event_applied": applied - delivered,
                        "  pushed_to_page": watcher.succeeded_at[g.pk] - applied,
                        "backend": finished - started,
                        "total": watcher.succeeded_at[g.pk] - submitted,
                    }
                )
        watcher.stop.set()
        watcher.join(timeout=5)
    finally:
        stack.stop()

    def stats(key: str) -> dict[str, float]:
        values = sorted(r[key] for r in rows)
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        return {"median": statistics.median(values), "p90": p90, "max": values[-1]}

    figures = {key: stats(key) for key in rows[0]}
    print(f"Generation path overhead over {len(rows)} near-zero synthetic jobs (seconds, loopback)")
    print(f"{'stage':<22}{'median':>10}{'p90':>10}{'max':>10}")
    for key, s in figures.items():
        print(f"{key:<22}{s['median']:>10.3f}{s['p90']:>10.3f}{s['max']:>10.3f}")
    overhead = figures["submit_to_start"]["median"] + figures["finish_to_visible"]["median"]
    print(f"median overhead (submit->start + finish->visible): {overhead:.3f} s (target < 0.5 s)")
    result = {"jobs": len(rows), "median_overhead_s": round(overhead, 4)}
    result.update({f"{k.strip()}_{s}_s": round(v, 4) for k, d in figures.items() for s, v in d.items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
