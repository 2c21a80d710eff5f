"""The dispatch order of pending generations: instructor priority first, then fair share within the round.

Pure Python with no Django import: the conductor calls it on every pass, and bench/burst.py runs the very
same functions in virtual time.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

# owner_id -> generations dispatched or running now.
InFlight = Mapping[int, int]
# (round_id, owner_id) -> generations that succeeded in that round.
Finished = Mapping[tuple[int, int], int]
# (not priority, not requeued, owner's in-flight count, finished in the round, submitted_at, id, owner_id)
_Key = tuple[bool, bool, int, int, float, int, int]


@dataclass(frozen=True)
class Pending:
    id: int
    owner_id: int
    round_id: int
    queue: str
    priority: bool  # instructor priority: before everyone else
    submitted_at: float  # epoch seconds
    # Lost or failed by the system mid-run and queued again: it already waited its turn, so it goes
    # before every other job of its priority.
    requeued: bool = False


# round_id -> the most generations one filmmaker of that round may have in flight (a burst window).
Caps = Mapping[int, int]


def order(
    pending: Sequence[Pending], in_flight: InFlight, finished: Finished, caps: Caps | None = None
) -> list[Pending]:
    """The full dispatch order of `pending`, all queues mixed (callers filter by queue).

    Greedy: repeatedly take the best remaining job by (not priority, not requeued, owner's in-flight
    count, owner's finished count in that job's round, submitted_at, id), then count it as in flight
    for its owner before choosing the next, so that in a burst everyone's first job comes before
    anyone's second. Under `caps`, a filmmaker's jobs beyond their round's cap are held: they are left
    out.
    """
    return list(_greedy(pending, in_flight, finished, caps or {}))


def plan(
    pending: Sequence[Pending],
    in_flight: InFlight,
    finished: Finished,
    capacity: Mapping[str, int],
    caps: Caps | None = None,
) -> list[Pending]:
    """What to dispatch now: for each queue, its first capacity[queue] jobs in `order`.

    In-flight counts carry across queues exactly as in `order`, so `positions` and `plan` always agree on
    who is next. A queue with capacity <= 0, or missing from `capacity`, gets nothing.
    """
    left = {queue: n for queue, n in capacity.items() if n > 0}
    chosen: list[Pending] = []
    if not left:
        return chosen
    for job in _greedy(pending, in_flight, finished, caps or {}):
        if left.get(job.queue, 0) > 0:
            chosen.append(job)
            left[job.queue] -= 1
            if left[job.queue] == 0:
                del left[job.queue]
                if not left:
                    break
    return chosen


def positions(
    pending: Sequence[Pending], in_flight: InFlight, finished: Finished, caps: Caps | None = None
) -> dict[int, int]:
    """Generation id -> position in line within its queue (1 = next), under `order`; jobs held by
    `caps` come after the others, in their own order."""
    seen: Counter[str] = Counter()
    result: dict[int, int] = {}
    free = list(_greedy(pending, in_flight, finished, caps or {}))
    held_ids = {job.id for job in pending} - {job.id for job in free}
    held = [job for job in _greedy(pending, in_flight, finished, {}) if job.id in held_ids]
    for job in free + held:
        seen[job.queue] += 1
        result[job.id] = seen[job.queue]
    return result


def held(pending: Sequence[Pending], in_flight: InFlight, finished: Finished, caps: Caps) -> set[int]:
    """Ids of the jobs a burst window holds back now."""
    return {job.id for job in pending} - {job.id for job in _greedy(pending, in_flight, finished, caps)}


@dataclass(frozen=True)
class BurstWindow:
    """A round's burst window: after a demo, GPUs wait briefly for filmmakers who have not pressed yet.

    While it is open and some expected filmmaker has nothing in flight and nothing finished in the round,
    each filmmaker of the round may have at most max(1, workers // expected) generations in flight. It
    closes at `opened_at + length`, or early once every expected filmmaker has started."""

    round_id: int
    opened_at: float
    length: float
    expected: frozenset[int]

    def cap(self, now: float, in_flight: InFlight, finished: Finished, workers: int) -> int | None:
        """The cap now, or None when the window is closed (by time, or because everyone started)."""
        if not self.expected or not self.opened_at <= now < self.opened_at + self.length:
            return None
        if all(self.started(owner, in_flight, finished) for owner in self.expected):
            return None
        return max(1, workers // len(self.expected))

    def started(self, owner: int, in_flight: InFlight, finished: Finished) -> bool:
        return in_flight.get(owner, 0) > 0 or finished.get((self.round_id, owner), 0) > 0


def _greedy(
    pending: Sequence[Pending], in_flight: InFlight, finished: Finished, caps: Caps
) -> Iterator[Pending]:
    # An owner's in-flight count is the same for all of their jobs, so each owner's own jobs keep a fixed
    # order among themselves; only the owners' next jobs compete. A heap of those makes the greedy
    # O(n log owners) instead of rescanning every job for every pick.
    def key(job: Pending, count: int) -> _Key:
        done = finished.get((job.round_id, job.owner_id), 0)
        # job.id is unique, so the trailing owner_id is never compared: it only rides along.
        return (not job.priority, not job.requeued, count, done, job.submitted_at, job.id, job.owner_id)

    by_owner: dict[int, list[Pending]] = {}
    for job in pending:
        by_owner.setdefault(job.owner_id, []).append(job)
    counts = {owner: in_flight.get(owner, 0) for owner in by_owner}
    heap: list[_Key] = []
    for owner, jobs in by_owner.items():
        jobs.sort(key=lambda job: key(job, 0), reverse=True)  # the owner's next job last: pop() is O(1)
        heap.append(key(jobs[-1], counts[owner]))
    heapq.heapify(heap)
    while heap:
        owner = heapq.heappop(heap)[-1]
        jobs = by_owner[owner]
        job = jobs.pop()
        cap = caps.get(job.round_id)
        if cap is not None and not job.priority and counts[owner] >= cap:
            pass  # held by the round's burst window: it waits for the window to close
        else:
            yield job
            counts[owner] += 1
        if jobs:
            heapq.heappush(heap, key(jobs[-1], counts[owner]))
