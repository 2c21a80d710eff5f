"""A discrete-event simulation of dispatch in virtual time, for bench/burst.py and the tests.

Pure Python with no Django import. Workers pull when idle: each conductor pass offers the policy one slot
per idle worker of each queue, as the conductor does, and the policy is any callable with the signature of
`generations.domain.policy.plan`. The event loop knows three events (a submission arrives, a job finishes, the
conductor makes a pass), so spread-out arrivals or another policy need no change to it.
"""

from __future__ import annotations

import heapq
import itertools
import random
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .policy import BurstWindow, Finished, InFlight, Pending, plan

# `generations.domain.policy.plan`'s signature. A policy that needs the clock sets `timed = True` and takes
# `now=` as well; one that must be consulted at given times lists them in `wakeups`.
Policy = Callable[..., list[Pending]]

ARRIVE, FINISH, PASS = "arrive", "finish", "pass"


@dataclass(frozen=True)
class Job:
    id: int
    owner_id: int
    submitted_at: float  # also when the conductor learns of it
    duration: float  # seconds on a warm worker
    queue: str = "video"
    round_id: int = 1
    priority: bool = False

    def pending(self) -> Pending:
        return Pending(self.id, self.owner_id, self.round_id, self.queue, self.priority, self.submitted_at)


@dataclass
class Run:
    jobs: Sequence[Job]
    started: dict[int, float] = field(default_factory=dict)
    finished: dict[int, float] = field(default_factory=dict)
    passes: int = 0
    # GPU-seconds during which a worker was idle while a job of its queue waited (what holding costs).
    idle_with_work: float = 0.0

    def first_takes(self) -> dict[int, float]:
        """Owner -> seconds from their first submission to their first finished job."""
        submitted: dict[int, float] = {}
        first: dict[int, float] = {}
        for job in self.jobs:
            submitted[job.owner_id] = min(submitted.get(job.owner_id, job.submitted_at), job.submitted_at)
            done = self.finished[job.id]
            first[job.owner_id] = min(first.get(job.owner_id, done), done)
        return {owner: first[owner] - submitted[owner] for owner in first}

    def makespan(self) -> float:
        return max(self.finished.values()) - min(job.submitted_at for job in self.jobs)

    def summary(self) -> dict[str, float]:
        firsts = list(self.first_takes().values())
        return {
            "first_max": max(firsts),
            "first_median": statistics.median(firsts),
            "makespan": self.makespan(),
        }


@dataclass(frozen=True)
class Snapshot:
    """What the system knows when a job arrives (for estimators run in virtual time, bench/eta.py)."""

    now: float
    pending: list[Pending]  # the new job included
    in_flight: InFlight
    finished: Finished
    running: Mapping[int, tuple[str, int, float]]  # job id -> (queue, worker, started at)
    idle_warm: Mapping[str, Sequence[int]]  # queue -> idle workers that ran a job already
    idle_cold: Mapping[str, Sequence[int]]  # queue -> idle workers whose first job pays the cold start
    done: Sequence[tuple[int, float, float]]  # (job id, started, finished), oldest first


Observer = Callable[[Job, Snapshot], None]


def simulate(
    jobs: Sequence[Job],
    workers: Mapping[str, int],
    policy: Policy,
    *,
    cold_start: float = 0.0,
    pass_delay: float = 0.0,
    observe: Observer | None = None,
) -> Run:
    """Run `jobs` on `workers` (queue -> count) under `policy`; every job runs to completion.

    A worker's first job takes `cold_start` longer (loading models). Conductor passes run at most once per
    `pass_delay` (the first at once), so events closer together than that share one pass. `observe` is
    called as each job arrives, with what is known then.
    """
    sim = _Simulation(jobs, workers, policy, cold_start=cold_start, pass_delay=pass_delay)
    sim.observe = observe
    sim.run_all()
    return sim.run


class _Simulation:
    def __init__(
        self,
        jobs: Sequence[Job],
        workers: Mapping[str, int],
        policy: Policy,
        *,
        cold_start: float,
        pass_delay: float,
    ) -> None:
        self.by_id = {job.id: job for job in jobs}
        self.run = Run(jobs)
        self.policy, self.workers = policy, workers
        self.cold_start, self.pass_delay = cold_start, pass_delay
        self.seq = (
            itertools.count()
        )  # breaks ties between events at the same time: first pushed, first handled
        # (time, seq, kind, job id, worker); the job id and worker are -1 where they do not apply.
        self.events = [(job.submitted_at, next(self.seq), ARRIVE, job.id, -1) for job in jobs]
        self.events += [(t, next(self.seq), PASS, -1, -1) for t in getattr(policy, "wakeups", ())]
        heapq.heapify(self.events)
        self.timed = getattr(policy, "timed", False)
        # Idle workers per queue; a finished worker is warm. Warm ones are taken first: nobody should pay a
        # cold start that an idle warm worker avoids.
        self.cold = {queue: list(range(n)) for queue, n in workers.items()}
        self.warm: dict[str, list[int]] = {queue: [] for queue in workers}
        self.pending: dict[int, Pending] = {}
        self.in_flight: Counter[int] = Counter()
        self.finished: Counter[tuple[int, int]] = Counter()
        self.pass_due = False
        self.last_pass = float("-inf")
        self.observe: Observer | None = None
        self.running: dict[int, tuple[str, int, float]] = {}
        self.done: list[tuple[int, float, float]] = []

    def run_all(self) -> None:
        last = min((e[0] for e in self.events), default=0.0)
        while self.events:
            now, _, kind, job_id, worker = heapq.heappop(self.events)
            waiting = Counter(p.queue for p in self.pending.values())
            self.run.idle_with_work += (now - last) * sum(
                min(len(self.warm[q]) + len(self.cold[q]), waiting[q]) for q in self.workers
            )
            last = now
            if kind == PASS:
                self._pass(now)
                continue
            job = self.by_id[job_id]
            if kind == ARRIVE:
                self.pending[job.id] = job.pending()
                if self.observe is not None:
                    self.observe(job, self._snapshot(now))
            else:
                self.in_flight[job.owner_id] -= 1
                self.finished[(job.round_id, job.owner_id)] += 1
                self.warm[job.queue].append(worker)
                self.run.finished[job.id] = now
                self.done.append((job.id, self.running.pop(job.id)[2], now))
            if not self.pass_due:
                # As the conductor: at once if no pass ran in the last pass_delay, else when it has passed.
                self.pass_due = True
                due = max(now, self.last_pass + self.pass_delay)
                heapq.heappush(self.events, (due, next(self.seq), PASS, -1, -1))
        if self.pending:
            raise RuntimeError(f"{len(self.pending)} jobs never ran: no worker serves their queue")

    def _snapshot(self, now: float) -> Snapshot:
        return Snapshot(
            now=now,
            pending=list(self.pending.values()),
            in_flight=dict(self.in_flight),
            finished=dict(self.finished),
            running=dict(self.running),
            idle_warm={q: list(w) for q, w in self.warm.items()},
            idle_cold={q: list(w) for q, w in self.cold.items()},
            done=list(self.done),
        )

    def _pass(self, now: float) -> None:
        self.pass_due = False
        self.last_pass = now
        self.run.passes += 1
        capacity = {queue: len(self.warm[queue]) + len(self.cold[queue]) for queue in self.workers}
        args = (list(self.pending.values()), self.in_flight, self.finished, capacity)
        for chosen in self.policy(*args, now=now) if self.timed else self.policy(*args):
            job = self.by_id[chosen.id]
            if chosen.id not in self.pending or not (self.warm.get(job.queue) or self.cold.get(job.queue)):
                raise RuntimeError(f"policy chose job {chosen.id}: not pending, or no idle worker for it")
            is_warm = bool(self.warm[job.queue])
            worker = (self.warm if is_warm else self.cold)[job.queue].pop(0)
            del self.pending[job.id]
            self.in_flight[job.owner_id] += 1
            self.run.started[job.id] = now
            self.running[job.id] = (job.queue, worker, now)
            done_at = now + job.duration + (0.0 if is_warm else self.cold_start)
            heapq.heappush(self.events, (done_at, next(self.seq), FINISH, job.id, worker))


def fifo(
    pending: Sequence[Pending], in_flight: InFlight, finished: Finished, capacity: Mapping[str, int]
) -> list[Pending]:
    """The baseline: plain submission order per queue, blind to owners and priority."""
    left = dict(capacity)
    chosen: list[Pending] = []
    for job in sorted(pending, key=lambda job: (job.submitted_at, job.id)):
        if left.get(job.queue, 0) > 0:
            chosen.append(job)
            left[job.queue] -= 1
    return chosen


def all_at_once(
    filmmakers: int,
    per_filmmaker: int,
    *,
    job_time: float,
    jitter: float,
    rng: random.Random,
    spacing: float = 0.001,
) -> list[Job]:
    """Everyone submits their whole batch at once after a demo, one filmmaker after another.

    Submissions are `spacing` seconds apart, each filmmaker's batch contiguous: FIFO's worst case and the
    one the workshop sees. Durations are job_time x uniform(1 - jitter, 1 + jitter), drawn per job so that
    every policy runs the same work.
    """
    owners = [owner for owner in range(1, filmmakers + 1) for _ in range(per_filmmaker)]
    return [
        Job(
            id=i + 1,
            owner_id=owner,
            submitted_at=i * spacing,
            duration=job_time * rng.uniform(1 - jitter, 1 + jitter),
        )
        for i, owner in enumerate(owners)
    ]


@dataclass
class Reserving:
    """Fair share with a burst window: the conductor's policy after a round opens or "Go"."""

    window: BurstWindow
    workers: int
    timed = True

    @property
    def wakeups(self) -> tuple[float, ...]:
        # Held GPUs are used the moment the window closes.
        return (self.window.opened_at + self.window.length,)

    def __call__(
        self,
        pending: Sequence[Pending],
        in_flight: InFlight,
        finished: Finished,
        capacity: Mapping[str, int],
        *,
        now: float,
    ) -> list[Pending]:
        cap = self.window.cap(now, in_flight, finished, self.workers)
        caps = {self.window.round_id: cap} if cap is not None else {}
        return plan(pending, in_flight, finished, capacity, caps)


def spread(
    filmmakers: int,
    per_filmmaker: int,
    *,
    job_time: float,
    jitter: float,
    rng: random.Random,
    over: float = 60.0,
    between: float = 0.5,
) -> list[Job]:
    """After a demo, filmmakers read, type and press "generate" over `over` seconds: each one's first
    press at a uniform time in that span, their next presses `between` seconds apart."""
    starts = {owner: rng.uniform(0, over) for owner in range(1, filmmakers + 1)}
    jobs: list[Job] = []
    for owner, start in starts.items():
        for k in range(per_filmmaker):
            jobs.append(
                Job(
                    id=len(jobs) + 1,
                    owner_id=owner,
                    submitted_at=start + k * between,
                    duration=job_time * rng.uniform(1 - jitter, 1 + jitter),
                )
            )
    return jobs
