"""The fleet over time: the `Worker` table, kept from the heartbeats by the conductor (identity,
state, online and busy seconds), so spend adds up after a worker leaves."""

from __future__ import annotations

import redis
from django.conf import settings
from django.utils import timezone

from generations.broker.heartbeats import WorkerInfo, workers
from generations.models import Generation, GpuHost, Worker


def sync(conn: redis.Redis) -> list[WorkerInfo]:
    """Record what the heartbeats say in the Worker table: identity, state, and online and busy
    time (the gap since the last sync, when the worker was seen then too). Returns the live ones."""
    now = timezone.now()
    alive = workers(conn)
    gap_limit = float(settings.WORKER_LOST_AFTER)
    usernames = {w.host for w in alive if w.host}
    hosts = dict(GpuHost.objects.filter(username__in=usernames).values_list("username", "pk"))
    for w in alive:
        row = Worker.objects.filter(name=w.name).first()
        current = (
            Generation.objects.filter(pk=w.generation_id).values_list("pk", flat=True).first()
            if w.generation_id
            else None
        )
        fields = {
            "provider": w.provider,
            "price_per_hour": w.price_per_hour,
            "billing_seconds": w.billing_seconds,
            "gpu": w.gpu,
            "vram_gb": w.vram_gb,
            "queues": ",".join(w.queues),
            "templates": w.templates,
            "state": w.state,
            "current_generation_id": current,
            "last_seen": now,
            "host_id": hosts.get(w.host),
        }
        if row is None:
            Worker.objects.create(name=w.name, first_seen=now, **fields)
            continue
        gap = (now - row.last_seen).total_seconds()
        online = gap if gap <= gap_limit else 0.0  # a longer silence was time offline
        Worker.objects.filter(pk=row.pk).update(
            online_seconds=row.online_seconds + online,
            busy_seconds=row.busy_seconds + (online if w.state in ("busy", "delivering") else 0.0),
            **fields,
        )
    names = [w.name for w in alive]
    Worker.objects.exclude(name__in=names).exclude(state__in=("gone", "revoked")).update(
        state="gone", current_generation=None
    )
    return alive
