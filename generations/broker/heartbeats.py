"""What the GPU workers say about themselves: their heartbeats in Redis, read by the conductor to
size dispatch and notice lost workers, by the ETA and by the live room."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.conf import settings

from gpu_worker import protocol


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    state: str
    queues: tuple[str, ...]
    generation_id: int | None
    attempt: int | None
    ts: float
    provider: str = ""
    price_per_hour: float = 0.0
    billing_seconds: int = 1
    gpu: str = ""
    vram_gb: float | None = None
    templates: str = ""
    delivered: str = ""  # RQ job id of the last attempt it finished and delivered (see protocol)

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.ts

    def serves(self, queue: str) -> bool:
        return queue in self.queues


def _decode(raw: dict[bytes, bytes]) -> WorkerInfo | None:
    f = {k.decode(): v.decode() for k, v in raw.items()}
    try:
        return WorkerInfo(
            name=f["name"],
            state=f.get("state", ""),
            queues=tuple(q for q in f.get("queues", "").split(",") if q),
            generation_id=int(f["generation_id"]) if f.get("generation_id") else None,
            attempt=int(f["attempt"]) if f.get("attempt") else None,
            ts=float(f["ts"]),
            provider=f.get("provider", ""),
            price_per_hour=float(f.get("price_per_hour") or 0),
            billing_seconds=max(int(float(f.get("billing_seconds") or 1)), 1),
            gpu=f.get("gpu", ""),
            vram_gb=float(f["vram_gb"]) if f.get("vram_gb") else None,
            templates=f.get("templates", ""),
            delivered=f.get("delivered", ""),
        )
    except (KeyError, ValueError):
        return None


def workers(conn: redis.Redis, *, max_age: float | None = None) -> list[WorkerInfo]:
    """Workers whose heartbeat is younger than `max_age` (default WORKER_LOST_AFTER)."""
    max_age = settings.WORKER_LOST_AFTER if max_age is None else max_age
    names = sorted(n.decode() for n in conn.smembers(protocol.WORKERS_SET))
    if not names:
        return []
    pipe = conn.pipeline()
    for name in names:
        pipe.hgetall(protocol.worker_key(name))
    now = time.time()
    alive, gone = [], []
    for name, raw in zip(names, pipe.execute(), strict=True):
        info = _decode(raw) if raw else None
        if info is None:
            gone.append(name)  # the key expired: forget the name too
        elif info.age(now) <= max_age:
            alive.append(info)
    if gone:
        conn.srem(protocol.WORKERS_SET, *gone)
    return alive
