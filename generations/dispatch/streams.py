"""The event streams the conductor reads: the shared one (the web app's wake-ups, and the events of
workers without a credential on a Redis without ACLs) and one per enrolled GPU host, so the
conductor knows which credential sent each event. A revoked host's stream is read no more."""

from __future__ import annotations

import redis

from generations.models import GpuHost
from gpu_worker import protocol

# A host appends to its own stream; it must not grow it without bound (its worker trims, an attacker won't).
HOST_STREAM_MAXLEN = 10_000


class EventStreams:
    def __init__(self, conn: redis.Redis, base: str, group: str) -> None:
        self.conn, self.base, self.group = conn, base, group
        self.hosts: dict[str, GpuHost | None] = {base: None}

    def refresh(self) -> None:
        """Follow enrolments and revocations (the conductor calls it every reconcile pass)."""
        active = {
            protocol.host_events_stream(h.username, self.base): h
            for h in GpuHost.objects.filter(revoked_at=None)
        }
        new = set(active) - set(self.hosts)
        self.hosts = {self.base: None, **active}
        for stream in new:
            self.ensure_group(stream)

    def ensure_groups(self) -> None:
        for stream in self.hosts:
            self.ensure_group(stream)

    def ensure_group(self, stream: str) -> None:
        try:
            self.conn.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def host_of(self, stream: str) -> GpuHost | None:
        return self.hosts.get(stream)

    def read(self, consumer: str, start: str, *, block_ms: int | None, count: int) -> list[tuple[str, list]]:
        reply = self.conn.xreadgroup(
            self.group, consumer, dict.fromkeys(self.hosts, start), count=count, block=block_ms
        )
        return [
            (name.decode() if isinstance(name, bytes) else name, entries) for name, entries in reply or []
        ]

    def trim(self) -> None:
        pipe = self.conn.pipeline()
        for stream, host in self.hosts.items():
            if host is not None:
                pipe.xtrim(stream, maxlen=HOST_STREAM_MAXLEN, approximate=True)
        pipe.execute()
