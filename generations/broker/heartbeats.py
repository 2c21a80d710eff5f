"""What the GPU workers say about themselves: their heartbeats in Redis, read by the conductor to
size dispatch and notice lost workers, by the ETA and by the live room."""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from gpu_worker import protocol

log = logging.getLogger(__name__)

STATES = frozenset({"warming", "idle", "busy", "delivering", "draining"})
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")


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
    host: str = ""  # the enrolled host's user whose set listed it ("" for a worker without one)

    def age(self, now: float | None = None) -> float:
        return (now or time.time()) - self.ts

    def serves(self, queue: str) -> bool:
        return queue in self.queues


def _text(value: str, limit: int) -> str:
    if len(value) > limit or not _PRINTABLE.match(value):
        raise ValueError(f"{value[:40]!r} is too long or has control characters")
    return value


def _number(value: str, low: float, high: float) -> float:
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{value[:40]!r} is out of bounds")
    return number


def _decode(raw: dict[bytes, bytes], *, host: str = "") -> WorkerInfo | None:
    """A heartbeat checked against its schema; None (with a log line) when it fails: a host must
    not be able to break the fleet's sync or the autoscaler with an absurd price or size."""
    try:
        f = {k.decode(): v.decode() for k, v in raw.items()}
        name = _text(f["name"], 120)
        if host and not protocol.in_namespace(name, host):
            raise ValueError(f"{name!r} is not under {host}")
        state = f.get("state", "")
        if state not in STATES:
            raise ValueError(f"unknown state {state[:20]!r}")
        queues = tuple(q for q in _text(f.get("queues", ""), 200).split(",") if q)
        return WorkerInfo(
            name=name,
            state=state,
            queues=queues,
            generation_id=int(_number(f["generation_id"], 1, 2**53)) if f.get("generation_id") else None,
            attempt=int(_number(f["attempt"], 0, 1000)) if f.get("attempt") else None,
            ts=_number(f["ts"], 0, 1e11),
            provider=_text(f.get("provider", ""), 40),
            price_per_hour=_number(f.get("price_per_hour") or 0, 0, 10_000),
            billing_seconds=int(_number(f.get("billing_seconds") or 1, 1, 86_400)),
            gpu=_text(f.get("gpu", ""), 120),
            vram_gb=_number(f["vram_gb"], 0, 100_000) if f.get("vram_gb") else None,
            templates=_text(f.get("templates", ""), 500),
            delivered=_text(f.get("delivered", ""), 120),
            host=host,
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        _complain(host, exc)
        return None


_complained: dict[str, float] = {}


def _complain(host: str, exc: Exception) -> None:
    # Heartbeats are read several times a second: one line per host per minute is enough.
    now = time.monotonic()
    if now - _complained.get(host, -math.inf) >= 60:
        _complained[host] = now
        log.warning("dropping an invalid heartbeat from %s: %s", host or "a worker", exc)


def workers(conn: redis.Redis, *, max_age: float | None = None) -> list[WorkerInfo]:
    """Workers whose heartbeat is younger than `max_age` (default WORKER_LOST_AFTER): those listed in
    the shared set and in each enrolled host's own set (``protocol.HOSTS_SET``)."""
    max_age = settings.WORKER_LOST_AFTER if max_age is None else max_age
    hosts = sorted(h.decode() for h in conn.smembers(protocol.HOSTS_SET))
    pipe = conn.pipeline()
    pipe.smembers(protocol.WORKERS_SET)
    for host in hosts:
        pipe.smembers(protocol.host_workers_set(host))
    sets = pipe.execute()
    listed = [(n.decode(), "", protocol.WORKERS_SET) for n in sets[0]]
    for host, names in zip(hosts, sets[1:], strict=True):
        listed += [(n.decode(), host, protocol.host_workers_set(host)) for n in names]
    if not listed:
        return []
    listed.sort()
    pipe = conn.pipeline()
    for name, _host, _set in listed:
        pipe.hgetall(protocol.worker_key(name))
    now = time.time()
    alive: list[WorkerInfo] = []
    gone: dict[str, list[str]] = {}
    for (name, host, members), raw in zip(listed, pipe.execute(), strict=True):
        info = _decode(raw, host=host) if raw else None
        if not raw:
            gone.setdefault(members, []).append(name)  # the key expired: forget the name too
        elif info is not None and info.age(now) <= max_age:
            alive.append(info)
    for members, names in gone.items():
        conn.srem(members, *names)
    return alive
