from __future__ import annotations

import random
from collections import Counter

import pytest

from generations.domain.policy import Finished, InFlight, Pending, order, plan, positions
from generations.domain.simulate import Job, all_at_once, fifo, simulate

T = 240.0


def job(id: int, owner: int, *, at: float | None = None, **extra: object) -> Pending:
    fields: dict = {"round_id": 1, "queue": "video", "priority": False} | extra
    return Pending(id=id, owner_id=owner, submitted_at=id if at is None else at, **fields)


def batches(owners: int, each: int) -> list[Pending]:
    """Each owner submits a whole batch, one owner after another: FIFO's worst case."""
    return [job(i + 1, i // each + 1) for i in range(owners * each)]


def test_it_puts_everyones_first_job_before_anyones_second() -> None:
    owners = [p.owner_id for p in order(batches(3, 3), {}, {})]
    assert owners == [1, 2, 3, 1, 2, 3, 1, 2, 3]


def test_it_keeps_each_owners_jobs_oldest_first() -> None:
    ids = [p.id for p in order(batches(2, 3), {}, {})]
    assert ids == [1, 4, 2, 5, 3, 6]


def test_it_puts_instructor_priority_first() -> None:
    pending = [job(1, 1), job(2, 2), job(3, 9, priority=True)]
    assert [p.id for p in order(pending, {9: 4}, {})] == [3, 1, 2]


def test_it_puts_a_requeued_job_before_every_other_of_its_priority() -> None:
    # Owner 1 lost a job mid-render and has another in flight; owner 2 waits for a first one.
    pending = [job(1, 2), job(2, 1, requeued=True), job(3, 9, priority=True)]
    assert [p.id for p in order(pending, {1: 1}, {(1, 1): 3})] == [3, 2, 1]


def test_it_keeps_a_requeued_job_behind_instructor_priority() -> None:
    pending = [job(1, 1, requeued=True), job(2, 9, priority=True, at=99)]
    assert [p.id for p in order(pending, {}, {})] == [2, 1]


def test_it_prefers_the_owner_with_fewer_in_flight() -> None:
    pending = [job(1, 1), job(2, 2)]
    assert [p.id for p in order(pending, {1: 2, 2: 1}, {})] == [2, 1]


def test_it_prefers_fewer_finished_in_this_round() -> None:
    pending = [job(1, 1, round_id=2), job(2, 2, round_id=2)]
    assert [p.id for p in order(pending, {}, {(2, 1): 3})] == [2, 1]


def test_it_forgets_finished_counts_of_earlier_rounds() -> None:
    # A new round starts everyone even: what alice finished in round 1 does not hold her back in round 2.
    pending = [job(1, 1, round_id=2), job(2, 2, round_id=2)]
    assert [p.id for p in order(pending, {}, {(1, 1): 5})] == [1, 2]


def test_it_takes_the_oldest_first_on_ties() -> None:
    pending = [job(1, 1, at=50.0), job(2, 2, at=10.0), job(3, 3, at=10.0)]
    assert [p.id for p in order(pending, {}, {})] == [2, 3, 1]


def test_it_plans_each_queue_with_its_own_capacity() -> None:
    pending = [job(1, 1), job(2, 2), job(3, 3, queue="image"), job(4, 4, queue="image"), job(5, 5)]
    chosen = plan(pending, {}, {}, {"video": 1, "image": 5})
    assert [p.id for p in chosen] == [1, 3, 4]


def test_it_dispatches_nothing_without_capacity() -> None:
    pending = batches(2, 2)
    assert plan(pending, {}, {}, {"video": 0}) == []
    assert plan(pending, {}, {}, {"video": -1}) == []
    assert plan(pending, {}, {}, {"image": 3}) == []


def test_it_dispatches_everyones_first_job_in_a_burst() -> None:
    chosen = plan(batches(4, 6), {}, {}, {"video": 4})
    assert sorted(p.owner_id for p in chosen) == [1, 2, 3, 4]


def test_it_gives_positions_within_each_queue() -> None:
    pending = [job(1, 1), job(2, 1), job(3, 2), job(4, 3, queue="image")]
    assert positions(pending, {}, {}) == {1: 1, 3: 2, 2: 3, 4: 1}


def test_it_puts_next_in_line_what_plan_dispatches() -> None:
    pending, in_flight, finished = batches(5, 4), {2: 1, 4: 2}, {(1, 3): 1}
    chosen = plan(pending, in_flight, finished, {"video": 3})
    where = positions(pending, in_flight, finished)
    assert sorted(where[p.id] for p in chosen) == [1, 2, 3]


def reference_order(pending: list[Pending], in_flight: InFlight, finished: Finished) -> list[Pending]:
    """The policy as the issue states it, one full rescan per pick."""
    left, counts, result = list(pending), Counter(in_flight), []
    while left:
        best = min(
            left,
            key=lambda p: (
                not p.priority,
                counts[p.owner_id],
                finished.get((p.round_id, p.owner_id), 0),
                p.submitted_at,
                p.id,
            ),
        )
        left.remove(best)
        counts[best.owner_id] += 1
        result.append(best)
    return result


def random_case(rng: random.Random) -> tuple[list[Pending], dict[int, int], dict[tuple[int, int], int]]:
    pending = [
        job(
            i,
            rng.randint(1, 5),
            at=float(rng.randint(0, 6)),  # few distinct times, so that ties happen
            round_id=rng.randint(1, 2),
            queue=rng.choice(["video", "image"]),
            priority=rng.random() < 0.1,
        )
        for i in rng.sample(range(1, 1000), rng.randint(0, 30))
    ]
    in_flight = {owner: rng.randint(0, 3) for owner in range(1, 6) if rng.random() < 0.5}
    finished = {(r, owner): rng.randint(0, 4) for r in (1, 2) for owner in range(1, 6) if rng.random() < 0.5}
    return pending, in_flight, finished


@pytest.mark.parametrize("seed", range(300))
def test_it_matches_the_greedy_definition(seed: int) -> None:
    rng = random.Random(seed)
    pending, in_flight, finished = random_case(rng)
    expected = reference_order(pending, in_flight, finished)
    assert order(pending, in_flight, finished) == expected
    capacity = {"video": rng.randint(-1, 4), "image": rng.randint(0, 4)}
    heads = {queue: [p for p in expected if p.queue == queue][: max(n, 0)] for queue, n in capacity.items()}
    expected_plan = [p for p in expected if p in heads[p.queue]]
    assert plan(pending, in_flight, finished, capacity) == expected_plan


def test_it_orders_a_conductor_pass_quickly() -> None:
    rng = random.Random(7)
    pending = [job(i, rng.randint(1, 20), at=rng.random()) for i in range(1, 301)]
    assert len(order(pending, {}, {})) == 300
    assert sorted(positions(pending, {}, {}).values()) == list(range(1, 301))


def test_it_simulates_a_burst_with_fair_share_ahead_of_fifo() -> None:
    jobs = all_at_once(3, 2, job_time=T, jitter=0.0, rng=random.Random(1))
    fair = simulate(jobs, {"video": 2}, plan)
    first_in_first_out = simulate(jobs, {"video": 2}, fifo)
    assert max(fair.first_takes().values()) == pytest.approx(2 * T, abs=0.01)
    assert max(first_in_first_out.first_takes().values()) == pytest.approx(3 * T, abs=0.01)
    assert fair.makespan() == first_in_first_out.makespan() == pytest.approx(3 * T, abs=0.01)


def test_it_charges_each_workers_cold_start_once() -> None:
    jobs = [Job(id=i, owner_id=1, submitted_at=0.0, duration=T) for i in range(1, 4)]
    run = simulate(jobs, {"video": 2}, plan, cold_start=60.0)
    assert sorted(run.finished.values()) == [T + 60.0, T + 60.0, 2 * T + 60.0]


def test_it_sees_submissions_within_the_pass_delay_in_one_pass() -> None:
    jobs = all_at_once(2, 2, job_time=T, jitter=0.0, rng=random.Random(1), spacing=0.001)
    batched = simulate(jobs, {"video": 2}, plan, pass_delay=0.5)
    instant = simulate(jobs, {"video": 2}, plan, pass_delay=0.0)
    assert max(batched.first_takes().values()) == pytest.approx(T + 0.5, abs=0.01)
    assert max(instant.first_takes().values()) == pytest.approx(2 * T, abs=0.01)


def test_it_refuses_a_policy_that_overfills_the_workers() -> None:
    jobs = all_at_once(1, 2, job_time=T, jitter=0.0, rng=random.Random(1))
    with pytest.raises(RuntimeError, match="no idle worker"):
        simulate(jobs, {"video": 1}, lambda pending, in_flight, finished, capacity: list(pending))
