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

It runs two stacks in the same run, one job each in turn so both see the same noise: "on" as
shipped (a private Redis with ACLs, web and conductor with their own users, the worker an enrolled
host with its credential, jobs signed and verified, uploads checked against the attempt's holder),
and "off" without signing, verification and ACLs (bench/baseline.py, Redis's default user). Both
probe uploads in the limited child process. goal_met: "on" within 10 % of "off".

Usage: .venv/bin/python bench/pipeline.py   (env: BENCH_JOBS, DATABASE_URL, REDIS_URL)
Prints a table per stack, then one JSON line with the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
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

        pattern = re.compile(r'id="gen-(\d+)" class="card [^"]*\bstatus-succeeded\b')
        origin = "http://" + self.url.split("://", 1)[1].split("/", 1)[0]
        headers = {"Cookie": f"sessionid={self.session_key}"}
        while not self.stop.is_set():
            # The page reconnects as htmx would (an idle socket may be closed: channels_redis#422);
            # on connect it is sent the current cards, so a card that arrived meanwhile is seen late,
            # which the job's deadline would show.
            with connect(self.url, origin=origin, additional_headers=headers) as ws:
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        message = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        break
                    now = time.time()
                    for gid in pattern.findall(str(message)):
                        self.succeeded_at.setdefault(int(gid), now)


class BaselineStack:
    """Rewrites a LiveStack's commands to start its processes through bench/baseline.py."""

    @staticmethod
    def wrap(stack):  # type: ignore[no-untyped-def]
        spawn = stack._spawn
        launcher = str(ROOT / "bench" / "baseline.py")

        def _spawn(name, cmd, env=None):  # type: ignore[no-untyped-def]
            if cmd[1:3] == ["-m", "daphne"]:
                cmd = [cmd[0], launcher, "daphne", *cmd[3:]]
            elif cmd[1:3] == ["manage.py", "conductor"]:
                cmd = [cmd[0], launcher, "conductor", *cmd[3:]]
            elif cmd[1:3] == ["-m", "gpu_worker"]:
                cmd = [cmd[0], launcher, "gpu_worker", *cmd[3:]]
            spawn(name, cmd, env)

        stack._spawn = _spawn
        return stack


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up in {timeout} s")
        time.sleep(0.1)


def measure(stack, conn, watcher, owner, rnd, template, params, rows, *, record: bool) -> None:  # type: ignore[no-untyped-def]
    from generations.models import Generation
    from generations.queue import services
    from tests.live import all_events

    submitted = time.time()
    g = services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params)
    deadline = time.monotonic() + 30
    while g.pk not in watcher.succeeded_at:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {g.pk} did not finish in 30 s; logs in {stack.logs}")
        time.sleep(0.002)
    g.refresh_from_db()
    assert g.status == Generation.Status.SUCCEEDED and g.takes.count() == 1
    mine = [e for e in all_events(conn) if e.get("generation_id") == g.pk]
    started = next(e["ts"] for e in mine if e["type"] == "started")
    finished = max(e["ts"] for e in mine if e["type"] == "progress")
    delivered = next(e["ts"] for e in mine if e["type"] == "succeeded")
    applied = g.finished_at.timestamp()
    if record:
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


def main() -> None:
    import signal

    import redis

    from bench.common import live_stack, round_with_synthetic, setup

    conn = setup()
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import User
    from tests.redis_server import WEB_USER, RedisServer

    owner = User.objects.create_user("bench", password=None)
    rnd, template = round_with_synthetic("Bench", quota=2 * (JOBS + WARMUP))
    session = SessionStore()
    session["_auth_user_id"] = str(owner.pk)
    session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
    session["_auth_user_hash"] = owner.get_session_auth_hash()
    session.create()
    # Two stacks on one database, used in turn (the idle one's conductor stopped), so both see the
    # same machine at the same time: "on" with ACLs, signed jobs and host credentials as shipped;
    # "off" through bench/baseline.py on Redis's default user, without them.
    shared_redis = settings.REDIS_URL
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
    settings.REDIS_URL = server.url(WEB_USER)
    stacks = {"on": live_stack("pipeline-on", redis_server=server)}
    settings.REDIS_URL = shared_redis
    stacks["off"] = BaselineStack.wrap(live_stack("pipeline-off", acl=False))
    conns = {"on": server.admin(), "off": conn}
    rows: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    watchers = {}
    try:
        for mode, stack in stacks.items():
            settings.REDIS_URL = server.url(WEB_USER) if mode == "on" else shared_redis
            stack.start_web()
            stack.start_conductor()
            stack.start_worker("bench-gpu-1")
        for mode, stack in stacks.items():
            # Connect the pages once every worker is warm (its heartbeat says idle).
            from generations.broker.heartbeats import workers

            beats = redis.Redis.from_url(server.url() if mode == "on" else shared_redis)
            wait_until(lambda b=beats: any(w.state == "idle" for w in workers(b)), 60, f"the {mode} worker")
            page = f"ws://127.0.0.1:{stack.port}/ws/rounds/{rnd.pk}/"
            watchers[mode] = PageWatcher(page, session.session_key)
            watchers[mode].start()
            assert watchers[mode].ready.wait(10), "the page's WebSocket did not connect"
        params = {"prompt": "bench", "seed": 1, "frames": 1, "width": 32, "height": 32, "fps": 12}
        for i in range(2 * (WARMUP + JOBS)):
            mode, idle = ("on", "off") if i % 2 == 0 else ("off", "on")
            os.kill(stacks[idle].procs["conductor"].pid, signal.SIGSTOP)
            os.kill(stacks[mode].procs["conductor"].pid, signal.SIGCONT)
            settings.REDIS_URL = server.url(WEB_USER) if mode == "on" else shared_redis
            measure(
                stacks[mode], conns[mode], watchers[mode], owner, rnd, template, params, rows[mode],
                record=i >= 2 * WARMUP,
            )  # fmt: skip
        for watcher in watchers.values():
            watcher.stop.set()
            watcher.join(timeout=5)
    finally:
        for stack in stacks.values():
            if "conductor" in stack.procs:
                os.kill(stack.procs["conductor"].pid, signal.SIGCONT)
            stack.stop()
        server.stop()
        redis.Redis.from_url(shared_redis).flushdb()

    def stats(mode: str, key: str) -> dict[str, float]:
        values = sorted(r[key] for r in rows[mode])
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        return {"median": statistics.median(values), "p90": p90, "max": values[-1]}

    result: dict[str, object] = {"jobs": len(rows["on"])}
    overhead = {}
    for mode in ("off", "on"):
        figures = {key: stats(mode, key) for key in rows[mode][0]}
        label = "with signing, verification and ACLs" if mode == "on" else "without them (baseline)"
        print(f"Generation path overhead, {label}, over {len(rows[mode])} near-zero synthetic jobs (s)")
        print(f"{'stage':<22}{'median':>10}{'p90':>10}{'max':>10}")
        for key, s in figures.items():
            print(f"{key:<22}{s['median']:>10.3f}{s['p90']:>10.3f}{s['max']:>10.3f}")
        overhead[mode] = figures["submit_to_start"]["median"] + figures["finish_to_visible"]["median"]
        print(f"median overhead (submit->start + finish->visible): {overhead[mode]:.3f} s\n")
        result[f"{mode}_median_overhead_s"] = round(overhead[mode], 4)
        for key, d in figures.items():
            result.update({f"{mode}_{key.strip()}_{s}_s": round(v, 4) for s, v in d.items()})
    # Both stacks probe uploads in the limited child process; what that costs over probing in the web
    # process as before, on the last take of the run.
    from generations.dispatch import media, probe
    from generations.models import Take

    name = Take.objects.filter(generation__round=rnd).latest("pk").file.name
    take = next(p for s in stacks.values() if (p := Path(s.env["MEDIA_ROOT"]) / name).exists())
    child, inline = [], []
    for _ in range(20):
        started = time.perf_counter()
        media.probe_file(take)
        child.append(time.perf_counter() - started)
        started = time.perf_counter()
        probe.probe(str(take), max_side=settings.MEDIA_MAX_SIDE, max_pixels=settings.MEDIA_MAX_PIXELS)
        inline.append(time.perf_counter() - started)
    result["probe_child_median_ms"] = round(statistics.median(child) * 1000, 1)
    result["probe_in_process_median_ms"] = round(statistics.median(inline) * 1000, 1)
    print(
        f"probe of one take: {result['probe_child_median_ms']} ms in the limited child process, "
        f"{result['probe_in_process_median_ms']} ms in-process (how it was before; in both stacks above)"
    )
    ratio = overhead["on"] / overhead["off"]
    print(f"on / off: {ratio:.3f} (goal: within 10 %)")
    result.update({"median_overhead_s": result["on_median_overhead_s"], "on_over_off": round(ratio, 4)})
    result["goal_met"] = ratio <= 1.10
    print(json.dumps(result))


if __name__ == "__main__":
    main()
