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
# (not priority, owner's in-flight count, finished in the round, submitted_at, id, owner_id)
_Key = tuple[bool, int, int, float, int, int]


@dataclass(frozen=True)
class Pending:
    id: int
    owner_id: int
    round_id: int
    queue: str
    priority: bool  # instructor priority: before everyone else
    submitted_at: float  # epoch seconds


def order(pending: Sequence[Pending], in_flight: InFlight, finished: Finished) -> list[Pending]:
    """The full dispatch order of `pending`, all queues mixed (callers filter by queue).

    Greedy: repeatedly take the best remaining job by (not priority, owner's in-flight count, owner's
    finished count in that job's round, submitted_at, id), then count it as in flight for its owner before
    choosing the next, so that in a burst everyone's first job comes before anyone's second.
    """
    return list(_greedy(pending, in_flight, finished))


def plan(
    pending: Sequence[Pending], in_flight: InFlight, finished: Finished, capacity: Mapping[str, int]
) -> list[Pending]:
    """What to dispatch now: for each queue, its first capacity[queue] jobs in `order`.

    In-flight counts carry across queues exactly as in `order`, so `positions` and `plan` always agree on
    who is next. A queue with capacity <= 0, or missing from `capacity`, gets nothing.
    """
    left = {queue: n for queue, n in capacity.items() if n > 0}
    chosen: list[Pending] = []
    if not left:
        return chosen
    for job in _greedy(pending, in_flight, finished):
        if left.get(job.queue, 0) > 0:
            chosen.append(job)
            left[job.queue] -= 1
            if left[job.queue] == 0:
                del left[job.queue]
                if not left:
                    break
    return chosen


def positions(pending: Sequence[Pending], in_flight: InFlight, finished: Finished) -> dict[int, int]:
    """Generation id -> position in line within its queue (1 = next), under `order`."""
    seen: Counter[str] = Counter()
    result: dict[int, int] = {}
    for job in _greedy(pending, in_flight, finished):
        seen[job.queue] += 1
        result[job.id] = seen[job.queue]
    return result


def _greedy(pending: Sequence[Pending], in_flight: InFlight, finished: Finished) -> Iterator[Pending]:
    # An owner's in-flight count is the same for all of their jobs, so each owner's own jobs keep a fixed
    # order among themselves; only the owners' next jobs compete. A heap of those makes the greedy
    # O(n log owners) instead of rescanning every job for every pick.
    def key(job: Pending, count: int) -> _Key:
        done = finished.get((job.round_id, job.owner_id), 0)
        # job.id is unique, so the trailing owner_id is never compared: it only rides along.
        return (not job.priority, count, done, job.submitted_at, job.id, job.owner_id)

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
        yield jobs.pop()
        counts[owner] += 1
        if jobs:
            heapq.heappush(heap, key(jobs[-1], counts[owner]))
