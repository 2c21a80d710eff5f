"""The line as last computed for the whole queue: every queued generation's position and ETA.

Computing ETAs walks the whole queue (about ten queries and the dispatch policy over every waiting
job), so it is done once: by the conductor after a pass that moved the line (and every few seconds
while jobs wait, as ETAs drift), kept in Redis, and read by every job card, push and the live room.
Only the owners whose cards would read differently are told. A reader that finds no snapshot at all
(no conductor has published since Redis started) computes and publishes one. A card newer than the
snapshot shows "waiting" until the next pass, a fraction of a second later."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping

import redis

from generations.live import groups
from generations.models import Generation
from generations.queue import eta

KEY = "workshop:line"
_AT = "at"
# A card reads differently when its position, hold or cold start changes, or its ETA moves this much.
MOVED_SECONDS = 10.0
# While jobs wait, ETAs drift with the running jobs: publish again this often even if nothing moved.
REFRESH_SECONDS = 5.0

S = Generation.Status


def line_publish(conn: redis.Redis) -> dict[int, eta.Estimate]:
    """Compute every queued generation's estimate once and store it (replacing the previous line)."""
    found = eta.estimates(conn)
    now = time.time()
    fields = {str(gid): _encode(e, now) for gid, e in found.items()}
    pipe = conn.pipeline(transaction=True)
    pipe.delete(KEY)
    pipe.hset(KEY, mapping={_AT: str(now), **fields})
    pipe.execute()
    return found


def line_estimates(conn: redis.Redis, ids: list[int] | None = None) -> dict[int, eta.Estimate]:
    """The published estimates (of `ids` only, when given); computed and published when none is."""
    now = time.time()
    if ids is None:
        raw = conn.hgetall(KEY)
        if not raw:
            return line_publish(conn)
        return {int(k): _decode(v, now) for k, v in raw.items() if k != _AT.encode()}
    if not ids:
        return {}
    at, *values = conn.hmget(KEY, [_AT, *map(str, ids)])
    if at is None:
        found = line_publish(conn)
        return {gid: found[gid] for gid in ids if gid in found}
    return {gid: _decode(v, now) for gid, v in zip(ids, values, strict=True) if v is not None}


# An estimate's times, in seconds from now.
_RELATIVE = ("start_in", "done_in", "start_low", "start_high", "done_low", "done_high")


def _encode(e: eta.Estimate, now: float) -> str:
    # ETAs are kept as moments, so a card rendered later still counts down from the right time.
    fields = dataclasses.asdict(e)
    for name in _RELATIVE:
        fields[name] += now
    return json.dumps(fields)


def _decode(raw: bytes, now: float) -> eta.Estimate:
    fields = json.loads(raw)
    for name in _RELATIVE:
        fields[name] = max(fields[name] - now, 0.0)
    return eta.Estimate(**fields)


def _reads_differently(a: eta.Estimate | None, b: eta.Estimate | None) -> bool:
    if a is None or b is None:
        return a is not b
    return (
        (a.position, a.held, a.cold, a.worker, a.after, a.measured)
        != (b.position, b.held, b.cold, b.worker, b.after, b.measured)
        or abs(a.start_in - b.start_in) >= MOVED_SECONDS
        or abs(a.done_in - b.done_in) >= MOVED_SECONDS
    )


def owners_moved(
    before: Mapping[int, eta.Estimate], after: Mapping[int, eta.Estimate], owners: Mapping[int, int]
) -> set[int]:
    """The owners (of generations in `owners`: id -> owner) whose cards read differently now."""
    return {owner for gid, owner in owners.items() if _reads_differently(before.get(gid), after.get(gid))}


class LineKeeper:
    """The conductor's side: publish the line when it moved, tell only the owners it moved for."""

    def __init__(self) -> None:
        self._signature: tuple[object, ...] | None = None
        self._published_at = 0.0
        self._line: dict[int, eta.Estimate] = {}

    def refresh(self, conn: redis.Redis, *, force: bool = False) -> set[int]:
        """One check (a query); a new line only when the queue or what runs changed, when `force`d
        (a burst window closed), or every REFRESH_SECONDS while jobs wait. Returns the owners told."""
        rows = list(
            Generation.objects.filter(status__in=(S.QUEUED, *Generation.IN_FLIGHT))
            .order_by("pk")
            .values_list("pk", "status", "owner_id")
        )
        signature = tuple((pk, status) for pk, status, _ in rows)
        queued = {pk: owner for pk, status, owner in rows if status == S.QUEUED}
        stale = queued and time.monotonic() - self._published_at >= REFRESH_SECONDS
        if signature == self._signature and not stale and not force:
            return set()
        line = {gid: e for gid, e in line_publish(conn).items() if gid in queued}
        # Owners of cards that left the line re-render already (their card changed), so only
        # those still waiting are told here.
        moved = owners_moved(self._line, line, queued)
        self._signature, self._published_at = signature, time.monotonic()
        self._line = line
        if moved:
            groups.queue_moved(owner_ids=moved)
        return moved
