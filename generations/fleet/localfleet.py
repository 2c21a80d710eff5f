"""The `local` provider: follows the autoscaler's published target by starting and stopping
`gpu-worker run` processes on this machine. Surplus workers get SIGTERM, so they finish their
job first (drain); idle ones are stopped before busy ones."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from generations.broker.heartbeats import workers
from generations.fleet import autoscale

log = logging.getLogger(__name__)


@dataclass
class LocalFleet:
    command: Sequence[str]  # `gpu-worker run ...` without --name
    env: dict[str, str]
    queue: str = "video"
    max_workers: int = 4
    prefix: str = "local-gpu"
    cwd: str | None = None
    log_dir: Path | None = None  # each worker's output goes to <name>.log there (else inherited)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)
    _counter: int = 0

    def running(self) -> list[str]:
        """Workers started and not yet exited, draining ones included."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                del self.procs[name]
                self.draining.discard(name)
        return sorted(self.procs)

    def step(self, conn: redis.Redis) -> int:
        """Move toward the published target once; returns the target it followed."""
        target = min(autoscale.published(conn).get(self.queue, 0), self.max_workers)
        active = [n for n in self.running() if n not in self.draining]
        if len(active) < target:
            for _ in range(target - len(active)):
                self._start()
        elif len(active) > target:
            # An enrolled host's workers are named "<its user>:<the name given here>".
            states = {w.name.rsplit(":", 1)[-1]: w.state for w in workers(conn)}
            # Idle (or not yet warm) ones first: a busy one would make someone wait for a redo.
            surplus = sorted(active, key=lambda n: states.get(n) in ("busy", "delivering"))[
                : len(active) - target
            ]
            for name in surplus:
                self.procs[name].send_signal(signal.SIGTERM)
                self.draining.add(name)
                log.info("draining %s", name)
        return target

    def _start(self) -> None:
        self._counter += 1
        name = f"{self.prefix}-{os.getpid()}-{self._counter}"
        env = {**self.env, "GPU_WORKER_PROVIDER": "local"}
        out = open(self.log_dir / f"{name}.log", "ab") if self.log_dir else None  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            [*self.command, "--name", name],
            env=env,
            cwd=self.cwd,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        log.info("started %s", name)

    def stop_all(self, timeout: float = 30) -> None:
        for name, proc in self.procs.items():
            # One SIGTERM each: a second one makes RQ abandon the running job.
            if proc.poll() is None and name not in self.draining:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.running()
