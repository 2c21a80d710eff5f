"""The worker's heartbeat: who it is, what state it is in, what it runs (see protocol)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpu_worker import protocol

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

WARMING, IDLE, BUSY, DRAINING = "warming", "idle", "busy", "draining"
# Shorter beats only for tests and chaos runs, where seconds matter.
INTERVAL_S = float(os.environ.get("GPU_WORKER_HEARTBEAT_S") or protocol.HEARTBEAT_INTERVAL_S)


def identity() -> dict[str, str]:
    """What a worker says about itself besides its state: provider, price, billing granularity,
    GPU and VRAM (through torch when it is installed), and the templates it can run."""
    info = {
        "provider": os.environ.get("GPU_WORKER_PROVIDER", "local"),
        "price_per_hour": os.environ.get("GPU_WORKER_PRICE_PER_HOUR", "0"),
        "billing_seconds": os.environ.get("GPU_WORKER_BILLING_SECONDS", "1"),
        "templates": os.environ.get("GPU_WORKER_TEMPLATES", ""),
        "gpu": "cpu",
        "vram_gb": "",
    }
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"], info["vram_gb"] = props.name, f"{props.total_memory / 1024**3:.1f}"
    except Exception:  # no torch here (a ComfyUI-only host): the GPU stays unnamed
        info["gpu"] = "unknown"
    return info


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
    ) -> None:
        self.redis, self.name, self.queues, self.probe = redis, name, queues, probe
        self.info = info or {}
        self.interval, self.ttl = interval, ttl
        self._stop = threading.Event()
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
        pipe.sadd(protocol.WORKERS_SET, self.name)
        pipe.execute()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:
                # A missed beat is what the conductor watches for; keep trying.
                log.warning("heartbeat failed", exc_info=True)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and say goodbye, so the conductor need not wait for the TTL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        try:
            self.redis.delete(protocol.worker_key(self.name))
            self.redis.srem(protocol.WORKERS_SET, self.name)
        except Exception:
            log.warning("could not remove the heartbeat", exc_info=True)
