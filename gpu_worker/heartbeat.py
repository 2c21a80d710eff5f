"""The worker's heartbeat: who it is, what state it is in, what it runs (see protocol)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpu_worker import protocol

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

WARMING, IDLE, BUSY, DRAINING = "warming", "idle", "busy", "draining"
# Shorter beats only for tests and chaos runs, where seconds matter.
INTERVAL_S = float(os.environ.get("GPU_WORKER_HEARTBEAT_S") or protocol.HEARTBEAT_INTERVAL_S)


PROVIDERS = ("verda-instance", "verda-serverless", "runpod-serverless", "local", "other")

# One of these exists wherever an NVIDIA driver is loaded on Linux (natively, in a container, in WSL 2).
NVIDIA_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg")
# Run in a child process: CUDA initialised in the worker's parent before RQ forks a work-horse
# is unusable in that work-horse, and the synthetic backend renders on CUDA there.
_GPU_PROBE = """
import json, torch
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(json.dumps([props.name, props.total_memory / 1024**3]))
else:
    print(json.dumps(["cpu", None]))
"""


def identity(
    *, provider: str, price_per_hour: float, billing_seconds: int, templates: Sequence[str] = ()
) -> dict[str, str]:
    """What a worker says about itself besides its state. ``gpu`` and ``vram_gb`` stay empty
    until ``gpu_info()`` has answered (it takes seconds: see ``Heartbeat.update``)."""
    return {
        "provider": provider,
        "price_per_hour": str(float(price_per_hour)),
        "billing_seconds": str(int(billing_seconds)),
        "templates": ",".join(templates),
        "gpu": "",
        "vram_gb": "",
    }


def gpu_info(
    python: str = sys.executable, timeout: float = 60.0, device_files: Sequence[str] = NVIDIA_DEVICE_FILES
) -> dict[str, str]:
    """``gpu`` and ``vram_gb`` (GiB) of CUDA device 0, asked of torch in a child process;
    ``gpu`` is "cpu" without a CUDA GPU. Without torch here (a ComfyUI-only host) nvidia-smi
    answers, and without either the GPU is "unknown"."""
    if sys.platform == "linux" and not any(os.path.exists(path) for path in device_files):
        return {"gpu": "cpu", "vram_gb": ""}  # no NVIDIA driver: not worth seconds of torch import
    try:
        done = subprocess.run(
            [python, "-c", _GPU_PROBE], capture_output=True, text=True, timeout=timeout, check=True
        )
        name, vram = json.loads(done.stdout.strip().splitlines()[-1])
        return {"gpu": str(name), "vram_gb": "" if vram is None else f"{float(vram):.1f}"}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, TypeError):
        pass
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        name, _, mib = done.stdout.strip().partition(",")
        return {"gpu": name.strip(), "vram_gb": f"{float(mib) / 1024:.1f}"}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"gpu": "unknown", "vram_gb": ""}


def block_stop_signals() -> None:
    """Leave SIGTERM and SIGINT to the main thread (call first thing in a helper thread).

    The kernel may hand a process's signal to any thread that does not block it, and Python runs
    the handler only when the main thread next runs Python code: the worker's main thread waits
    in waitpid() for the whole job, so the drain would start only after the job."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


def parse_job_id(job_id: str | None) -> tuple[str, str]:
    """("generation_id", "attempt") from an RQ job id made by ``protocol.job_id``; empty when idle."""
    if not job_id or not job_id.startswith("gen-") or "-a" not in job_id:
        return "", ""
    generation, _, attempt = job_id[4:].partition("-a")
    return generation, attempt


class Heartbeat:
    """Writes ``protocol.worker_key(name)`` every interval from a daemon thread.

    ``probe`` returns (state, current RQ job id or None); it is called on every beat so the
    heartbeat always says what the worker is doing now, not what it last announced."""

    def __init__(
        self,
        redis: Redis,
        *,
        name: str,
        queues: list[str],
        probe: Callable[[], tuple[str, str | None]],
        interval: float = INTERVAL_S,
        ttl: int = protocol.HEARTBEAT_TTL_S,
        info: dict[str, str] | None = None,
        workers_set: str = protocol.WORKERS_SET,
    ) -> None:
        self.redis, self.name, self.queues, self.probe = redis, name, queues, probe
        # An enrolled host lists its workers in a set of its own (protocol.host_workers_set).
        self.workers_set = workers_set
        self.info = info or {}
        self.interval, self.ttl = interval, ttl
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        state, job_id = self.probe()
        generation_id, attempt = parse_job_id(job_id)
        key = protocol.worker_key(self.name)
        fields = {
            **self.info,
            "name": self.name,
            "state": state,
            "queues": ",".join(self.queues),
            "generation_id": generation_id,
            "attempt": attempt,
            "ts": f"{time.time():.3f}",
        }
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.ttl)
        pipe.sadd(self.workers_set, self.name)
        pipe.execute()

    def update(self, fields: dict[str, str]) -> None:
        """Add to what every later beat says (the GPU, once ``gpu_info`` has answered)."""
        # A new dict, never a change in place: the beating thread may be copying the old one.
        self.info = {**self.info, **fields}

    def kick(self) -> None:
        """Beat now, from the beating thread (the worker took or ended a job): the conductor must not
        wait for the next interval to learn who runs what."""
        self._wake.set()

    def _loop(self) -> None:
        block_stop_signals()
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:
                # A missed beat is what the conductor watches for; keep trying.
                log.warning("heartbeat failed", exc_info=True)
            # Cleared after the wait, not before the beat: a stop() meanwhile is never lost.
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say goodbye, so the conductor need not wait for the TTL."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        try:
            self.redis.delete(protocol.worker_key(self.name))
            self.redis.srem(self.workers_set, self.name)
        except Exception:
            log.warning("could not remove the heartbeat", exc_info=True)
