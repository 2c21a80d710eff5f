#!/usr/bin/env python
"""Chaos at the production settings: what each fault costs in renders thrown away.

Four filmmakers keep the queue full for four local synthetic GPU workers (real daphne, two conductors
(a leader and a standby) and gpu-worker processes, on PostgreSQL and a private redis-server on a free
port, which this run may restart). With WORKER_LOST_AFTER, LOST_GRACE_SECONDS, MAX_ATTEMPTS and the
heartbeat at their defaults, it applies one fault after another, each while renders are in flight:

    leader      the leading conductor SIGKILLed, a standby running (then restarted as a standby)
    web         daphne killed and started again (about ten seconds down) while renders finish
    redis       redis-server restarted, its data lost
    flush       FLUSHALL with live workers
    parent      a busy worker's own process SIGKILLed (not its work-horse), restarted under its name
    horse       a busy worker's work-horse SIGKILLed: the render itself is killed
    stop        a busy worker SIGSTOPped for longer than WORKER_LOST_AFTER, then continued

It reports generations lost (failed or missing), duplicated takes and stuck ones, and, from the
workers' own events: **renders redone** (attempts that started rendering and whose output was thrown
away) and **GPU-seconds wasted** on them (first to last event), each blamed on the last fault that
struck while it rendered; and the **leader gap** (from the kill until
another conductor holds the lease). Goal: 0 lost, 0 duplicated, 0 stuck, renders redone only where a
render was killed (horse, parent), leader gap at most 3 s.

Usage: .venv/bin/python bench/chaos.py   (about four minutes: the production settings are in seconds
that a shorter run cannot honour; env CHAOS_FAULTS=leader,web,... picks faults, CHAOS_WORKERS)
Prints a table, then one JSON line with the figures. The test suite runs a shorter version.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAULTS = ("leader", "web", "redis", "flush", "parent", "horse", "stop")
# Where a render itself is killed, redoing it is the only way; everywhere else nothing may be redone.
RENDER_KILLED = frozenset({"parent", "horse"})
LEADER_KEY = "workshop:conductor:leader"
# Settings the bench must not tune: whatever the deployment defaults are is what runs.
PRODUCTION = (
    "WORKER_LOST_AFTER",
    "LOST_GRACE_SECONDS",
    "MAX_ATTEMPTS",
    "GPU_WORKER_HEARTBEAT_S",
    "CONDUCTOR_LEADER_TTL",
)


@dataclass
class Plan:
    faults: tuple[str, ...] = FAULTS
    workers: int = 4
    filmmakers: int = 4
    waiting_each: int = 2  # each filmmaker keeps this many queued
    # About 16 s a render: longer than LOST_GRACE_SECONDS, as real renders (minutes) are.
    frames: int = 40
    frame_delay: float = 0.4
    warmup: float = 10.0
    spacing: float = 24.0  # seconds from one fault to the next
    web_down: float = 8.0
    stop_for: float = 33.0  # longer than WORKER_LOST_AFTER (30 s), shorter than it plus the grace
    drain_timeout: float = 150.0
    seed: int = 7
    log: list[str] = field(default_factory=list)


@dataclass
class Attempt:
    started: float
    last: float
    worker: str
    succeeded: bool = False


class Recorder:
    """Copies the workers' events from the stream before Redis can lose them: when each attempt
    started, when it was last heard of, and whether it succeeded."""

    def __init__(self, conn: Any, stream: str) -> None:
        self.conn, self.stream = conn, stream
        self.last_id = "0-0"
        self.attempts: dict[tuple[int, int], Attempt] = {}

    def poll(self) -> None:
        import redis

        try:
            entries = self.conn.xrange(self.stream, min=f"({self.last_id}", count=10_000)
        except redis.RedisError:
            return
        for entry_id, fields in entries:
            self.last_id = entry_id.decode()
            try:
                event = json.loads(fields.get(b"data", b"{}"))
                key = (int(event["generation_id"]), int(event["attempt"]))
                ts = float(event["ts"])
            except (KeyError, TypeError, ValueError):
                continue  # wake-ups
            kind = event.get("type")
            if kind == "preview":
                continue
            seen = self.attempts.get(key)
            if seen is None:
                if kind not in ("started", "progress"):
                    continue
                seen = self.attempts[key] = Attempt(started=ts, last=ts, worker=str(event.get("worker", "")))
            seen.last = max(seen.last, ts)
            seen.succeeded = seen.succeeded or kind == "succeeded"


class Chaos:
    def __init__(
        self, stack: Any, redis_server: Any, conn: Any, owners: list[Any], rnd: Any, template: Any, plan: Plan
    ):
        from django.conf import settings

        self.stack, self.redis_server, self.conn = stack, redis_server, conn
        self.owners, self.rnd, self.template, self.plan = owners, rnd, template, plan
        self.rng = random.Random(plan.seed)
        self.recorder = Recorder(conn, settings.EVENTS_STREAM)
        self.ids: list[int] = []
        self.names = [f"chaos-gpu-{i}" for i in range(1, plan.workers + 1)]
        self.windows: list[tuple[str, float]] = [("calm", time.time())]
        self.leader_gap: float | None = None
        self.start = time.monotonic()
        self.feeding = True

    # --- load ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.plan.log.append(f"{time.monotonic() - self.start:6.1f}s {text}")

    def feed(self) -> None:
        from django.db.models import Count

        from generations.models import Generation
        from generations.queue import services

        if not self.feeding:
            return
        params = {
            "prompt": "chaos",
            "seed": 1,
            "frames": self.plan.frames,
            "width": 32,
            "height": 32,
            "fps": 12,
        }
        waiting = dict(
            Generation.objects.filter(pk__in=self.ids, status=Generation.Status.QUEUED)
            .values("owner_id")
            .annotate(n=Count("id"))
            .values_list("owner_id", "n")
        )
        for owner in self.owners:
            for _ in range(self.plan.waiting_each - waiting.get(owner.pk, 0)):
                g = services.generation_create(
                    owner=owner, round_id=self.rnd.pk, template=self.template, params=params
                )
                self.ids.append(g.pk)

    def tick(self) -> None:
        self.recorder.poll()
        self.feed()

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()
            time.sleep(0.2)

    def busy_worker(self) -> str | None:
        """A worker that renders now (its work-horse exists), preferably one not hit yet."""
        from tests.live import descendants

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            busy = [n for n in self.names if self.stack.running(n) and descendants(self.stack.pid(n))]
            if busy:
                return self.rng.choice(sorted(busy))
            self.tick()
            time.sleep(0.1)
        return None

    # --- faults -------------------------------------------------------------------------------

    def fault(self, name: str) -> None:
        self.recorder.poll()  # what Redis may be about to lose
        self.windows.append((name, time.time()))
        getattr(self, f"fault_{name}")()

    def fault_leader(self) -> None:
        before = self.conn.get(LEADER_KEY)
        self.stack.kill("conductor")
        killed = time.monotonic()
        self.say("killed the leading conductor (a standby runs)")
        while time.monotonic() - killed < 30:
            now = self.conn.get(LEADER_KEY)
            if now is not None and now != before:
                self.leader_gap = round(time.monotonic() - killed, 2)
                break
            time.sleep(0.02)
        self.say(f"another conductor leads after {self.leader_gap} s")
        self.stack.start_conductor()  # back, as the standby now

    def fault_web(self) -> None:
        self.stack.kill("web")
        down = time.monotonic()
        self.say("killed the web server")
        self.wait(self.plan.web_down)
        self.stack.start_web()
        self.say(f"web answers again after {time.monotonic() - down:.1f} s")

    def fault_redis(self) -> None:
        down = time.monotonic()
        # Its data and the GPU hosts' users lost (the app's come back from its config; the conductor
        # applies the hosts' again).
        self.redis_server.restart_empty()
        self.say(f"restarted redis-server (data lost), down {time.monotonic() - down:.1f} s")

    def fault_flush(self) -> None:
        self.conn.flushall()
        self.say("FLUSHALL")

    def fault_parent(self) -> None:
        victim = self.busy_worker()
        if victim is None:
            self.say("parent: no busy worker")
            return
        self.stack.kill_parent(victim)
        self.say(f"SIGKILLed {victim}'s own process (its work-horse left alone)")
        time.sleep(1.0)  # a supervisor restarts it
        self.stack.start_worker(victim, frame_delay=self.plan.frame_delay)

    def fault_horse(self) -> None:
        from tests.live import descendants

        victim = self.busy_worker()
        horses = descendants(self.stack.pid(victim)) if victim else []
        if not horses:
            self.say("horse: no busy worker")
            return
        os.kill(horses[0], signal.SIGKILL)
        self.say(f"SIGKILLed {victim}'s work-horse (the render)")

    def fault_stop(self) -> None:
        victim = self.busy_worker()
        if victim is None:
            self.say("stop: no busy worker")
            return
        self.stack.signal_all(victim, signal.SIGSTOP)
        self.say(f"SIGSTOPped {victim} for {self.plan.stop_for:.0f} s")
        self.wait(self.plan.stop_for)
        self.stack.signal_all(victim, signal.SIGCONT)
        self.say(f"SIGCONT {victim}")

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from generations.models import Generation

        stack, plan = self.stack, self.plan
        stack.start_web()
        stack.start_conductor()
        for name in self.names:
            stack.start_worker(name, frame_delay=plan.frame_delay)
        # The standby starts once the first conductor leads, so which one leads is known.
        deadline = time.monotonic() + 30
        while self.conn.get(LEADER_KEY) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        stack.start_conductor("conductor-standby")
        self.start = time.monotonic()
        self.wait(plan.warmup)
        for name in plan.faults:
            started = time.monotonic()
            self.fault(name)
            self.wait(max(plan.spacing - (time.monotonic() - started), 0))
        self.feeding = False
        self.windows.append(("drain", time.time()))
        self.say("no more submissions; draining")
        deadline = time.monotonic() + plan.drain_timeout
        while time.monotonic() < deadline:
            self.tick()
            if (
                not Generation.objects.filter(pk__in=self.ids)
                .exclude(status__in=Generation.TERMINAL)
                .exists()
            ):
                break
            time.sleep(0.3)
        time.sleep(1.0)
        self.recorder.poll()
        return self.figures(time.monotonic() - self.start)

    def blame(self, seen: Attempt) -> str:
        """The last fault that struck while this attempt was rendering: between its first event and
        shortly after its last (events come at least every frame, under a second apart)."""
        name = "calm"
        for candidate, since in self.windows[1:]:
            if candidate != "drain" and seen.started <= since <= seen.last + 1.0:
                name = candidate
        return name

    def figures(self, elapsed: float) -> dict[str, Any]:
        from generations.models import Generation

        rows = list(Generation.objects.filter(pk__in=self.ids).prefetch_related("takes"))
        final = {g.pk: (g.attempt if g.status == Generation.Status.SUCCEEDED else None) for g in rows}
        redone: dict[str, int] = {}
        wasted: dict[str, float] = {}
        for (gid, attempt), seen in self.recorder.attempts.items():
            if gid not in final or final[gid] == attempt:
                continue  # the take that was kept, or not ours
            window = self.blame(seen)
            redone[window] = redone.get(window, 0) + 1
            wasted[window] = round(wasted.get(window, 0.0) + (seen.last - seen.started), 1)
        succeeded = [g for g in rows if g.status == Generation.Status.SUCCEEDED]
        active = sum(1 for g in rows if g.is_active)
        avoidable = sum(n for window, n in redone.items() if window not in RENDER_KILLED)
        return {
            "generations": len(rows),
            "workers": self.plan.workers,
            "faults": ",".join(self.plan.faults),
            "succeeded": len(succeeded),
            "lost": len(rows) - len(succeeded) - active,
            "duplicated_takes": sum(max(len(g.takes.all()) - 1, 0) for g in rows),
            "succeeded_without_take": sum(1 for g in succeeded if len(g.current_takes()) != 1),
            "stuck": active,
            "renders_redone": sum(redone.values()),
            "renders_redone_avoidable": avoidable,
            "gpu_seconds_wasted": round(sum(wasted.values()), 1),
            "redone_by_fault": {name: redone.get(name, 0) for name in ("calm", *self.plan.faults, "drain")},
            "wasted_by_fault": {name: wasted.get(name, 0.0) for name in ("calm", *self.plan.faults, "drain")},
            "leader_gap_s": self.leader_gap,
            "max_attempt": max((g.attempt for g in rows), default=0),
            "seconds": round(elapsed, 1),
        }


def goal_met(figures: dict[str, Any]) -> bool:
    gap = figures["leader_gap_s"]
    return (
        figures["succeeded"] == figures["generations"]
        and not (
            figures["lost"]
            or figures["duplicated_takes"]
            or figures["stuck"]
            or figures["succeeded_without_take"]
        )
        and figures["renders_redone_avoidable"] == 0
        and ("leader" not in figures["faults"] or (gap is not None and gap <= 3.0))
    )


def run_chaos(
    stack: Any, redis_server: Any, conn: Any, owners: list[Any], rnd: Any, template: Any, plan: Plan
) -> dict[str, Any]:
    """Load, faults, drain; returns the figures. `stack` is a tests.live.LiveStack not started yet whose
    processes use `redis_server` (a tests.redis_server.RedisServer, ACLs on), and `conn` its admin."""
    for name in PRODUCTION:
        stack.env.pop(name, None)
    return Chaos(stack, redis_server, conn, owners, rnd, template, plan).run()


def main() -> None:
    from tests.redis_server import RedisServer

    for name in PRODUCTION:
        os.environ.pop(name, None)
    # A redis-server of this run's own (with ACLs, as in production): the run restarts and flushes it.
    redis_server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-chaos-redis-"))).start()
    try:
        figures, plan, logs = _run(redis_server)
    finally:
        redis_server.stop()
    for line in plan.log:
        print(line)
    print(f"\n{'fault':<10}{'redone':>8}{'GPU-s wasted':>14}")
    for name in ("calm", *plan.faults, "drain"):
        print(f"{name:<10}{figures['redone_by_fault'][name]:>8}{figures['wasted_by_fault'][name]:>14}")
    print(f"\n{'figure':<26}{'value':>10}")
    for key, value in figures.items():
        if not isinstance(value, dict):
            print(f"{key:<26}{value!s:>10}")
    ok = goal_met(figures)
    print(
        "goal (0 lost, 0 duplicated, 0 stuck, renders redone only where a render was killed, "
        f"leader gap <= 3 s): {'met' if ok else 'NOT met'}; logs in {logs}"
    )
    print(json.dumps({**figures, "goal_met": ok}))


def _run(redis_server: Any) -> tuple[dict[str, Any], Plan, Path]:
    from bench.common import live_stack, round_with_synthetic, setup

    setup()
    from accounts.models import User

    faults = tuple(f for f in os.environ.get("CHAOS_FAULTS", ",".join(FAULTS)).split(",") if f)
    plan = Plan(faults=faults, workers=int(os.environ.get("CHAOS_WORKERS", "4")))
    owners = [
        User.objects.create_user(f"chaos{i}", password=None, role=User.Role.FILMMAKER)
        for i in range(1, plan.filmmakers + 1)
    ]
    rnd, template = round_with_synthetic("Chaos", quota=10_000)
    stack = live_stack("chaos", redis_server)
    try:
        figures = run_chaos(stack, redis_server, redis_server.admin(), owners, rnd, template, plan)
    finally:
        stack.stop()
    return figures, plan, stack.logs.parent


if __name__ == "__main__":
    main()
