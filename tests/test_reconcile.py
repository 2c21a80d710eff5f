"""Worker loss, Redis losing its data, and conductor failover.

Heartbeats are written with the timestamps the test chooses, and each pass is given its `now`: a
worker is lost only after WORKER_LOST_AFTER + LOST_GRACE_SECONDS (30 + 10 s) of silence, anything
else after LOST_GRACE_SECONDS from when its reason first held."""

from __future__ import annotations

import json
import time

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from generations.broker import jobs
from generations.dispatch import attempts, reconcile
from generations.dispatch.attempts import REQUEUED_MESSAGE
from generations.dispatch.conductor import GROUP, Conductor, LeadershipLost
from generations.models import Generation
from generations.queue import services
from gpu_worker import protocol

S = Generation.Status


@pytest.fixture
def conductor(redis_conn, settings) -> Conductor:
    settings.WORKER_LOST_AFTER, settings.LOST_GRACE_SECONDS, settings.MAX_ATTEMPTS = 30, 10, 3
    return Conductor(connection=redis_conn)


@pytest.fixture
def t0() -> float:
    return time.time()


def beat(redis_conn, worker: str, ts: float, g: Generation | None = None, state: str = "busy") -> None:
    """What worker `worker` says at `ts`: running `g`'s current attempt, or idle."""
    redis_conn.hset(
        protocol.worker_key(worker),
        mapping={
            "name": worker,
            "state": state if g else "idle",
            "queues": "video",
            "generation_id": str(g.pk) if g else "",
            "attempt": str(g.attempt) if g else "",
            "ts": f"{ts:.3f}",
        },
    )
    redis_conn.sadd(protocol.WORKERS_SET, worker)


def running_on(conductor, redis_conn, generation, ts: float, worker: str = "w1") -> Generation:
    conductor.dispatch_once()
    generation.refresh_from_db()
    beat(redis_conn, worker, ts, generation)
    attempts.event_apply(
        {"type": "started", "generation_id": generation.pk, "attempt": generation.attempt, "worker": worker}
    )
    generation.refresh_from_db()
    return generation


def rq_job(redis_conn, g: Generation, attempt: int | None = None) -> Job:
    job_id = protocol.job_id(g.pk, attempt or g.attempt)
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def test_it_leaves_a_healthy_generation_alone(conductor, redis_conn, generation, t0) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    for later in (0, 30, 60, 90):
        beat(redis_conn, "w1", t0 + later, g)
        assert conductor.reconcile_once(now=t0 + later + 4) == 0


def test_it_loses_a_silent_worker_only_after_lost_after_plus_grace(
    conductor, redis_conn, generation, t0
) -> None:
    running_on(conductor, redis_conn, generation, t0)
    assert conductor.reconcile_once(now=t0 + 31) == 0  # silent past WORKER_LOST_AFTER: suspect
    assert conductor.reconcile_once(now=t0 + 39) == 0
    assert conductor.reconcile_once(now=t0 + 41) == 1
    generation.refresh_from_db()
    assert (generation.status, generation.attempt, generation.requeued) == (S.QUEUED, 1, True)
    assert redis_conn.get(protocol.cancel_key(generation.pk, 1)) == b"lost"  # in case it is alive after all
    conductor.dispatch_once()
    generation.refresh_from_db()
    assert (generation.status, generation.attempt, generation.requeued) == (S.DISPATCHED, 2, False)


def test_it_counts_silence_from_the_last_heartbeat_even_when_redis_lost_it(
    conductor, redis_conn, generation, t0
) -> None:
    running_on(conductor, redis_conn, generation, t0)
    conductor.reconcile_once(now=t0 + 1)  # heard at t0
    redis_conn.delete(protocol.worker_key("w1"))  # a flush: the worker is not seen at all
    assert conductor.reconcile_once(now=t0 + 20) == 0
    assert conductor.reconcile_once(now=t0 + 41) == 1


def test_it_forgives_a_worker_that_beats_again_within_the_grace(
    conductor, redis_conn, generation, t0
) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    assert conductor.reconcile_once(now=t0 + 35) == 0  # frozen for 35 s (a SIGSTOP)
    beat(redis_conn, "w1", t0 + 36, g)
    assert conductor.reconcile_once(now=t0 + 45) == 0
    assert conductor.reconcile_once(now=t0 + 60) == 0


def test_it_tells_the_filmmaker_one_calm_sentence_and_the_admin_why(
    conductor, redis_conn, generation, t0
) -> None:
    running_on(conductor, redis_conn, generation, t0)
    conductor.reconcile_once(now=t0 + 31)
    conductor.reconcile_once(now=t0 + 41)
    generation.refresh_from_db()
    assert generation.progress_message == REQUEUED_MESSAGE
    assert "no heartbeat from worker w1" in generation.error_detail


def test_an_attempt_its_worker_delivered_succeeds_though_redis_lost_the_event(
    conductor, redis_conn, generation, t0
) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    redis_conn.flushdb()  # the succeeded event was in the stream
    beat(redis_conn, "w1", t0 + 5)  # idle now, and saying what it delivered
    redis_conn.hset(protocol.worker_key("w1"), "delivered", protocol.job_id(g.pk, g.attempt))
    assert conductor.reconcile_once(now=t0 + 6) == 0  # the event may still be on its way
    g.refresh_from_db()
    assert g.status == S.RUNNING
    assert conductor.reconcile_once(now=t0 + 16) == 0
    g.refresh_from_db()
    assert (g.status, g.attempt) == (S.SUCCEEDED, 1)


def test_it_redispatches_when_the_work_horse_died(conductor, redis_conn, generation, t0) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    rq_job(redis_conn, g).set_status(JobStatus.FAILED)
    beat(redis_conn, "w1", t0)  # its worker lives on, idle
    assert conductor.reconcile_once(now=t0 + 1) == 0
    assert conductor.reconcile_once(now=t0 + 10) == 0
    assert conductor.reconcile_once(now=t0 + 11) == 1


def test_it_measures_the_grace_from_when_the_current_reason_first_held(
    conductor, redis_conn, generation, t0
) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    beat(redis_conn, "w1", t0)  # idle: no longer running it
    assert conductor.reconcile_once(now=t0 + 1) == 0
    rq_job(redis_conn, g).set_status(JobStatus.FAILED)  # another reason from t0 + 6
    assert conductor.reconcile_once(now=t0 + 6) == 0
    assert conductor.reconcile_once(now=t0 + 12) == 0  # 11 s after the first, 6 after this one
    assert conductor.reconcile_once(now=t0 + 16) == 1


def test_it_starts_the_grace_again_after_a_failed_pass(
    conductor, redis_conn, generation, t0, monkeypatch
) -> None:
    running_on(conductor, redis_conn, generation, t0)
    beat(redis_conn, "w1", t0)
    conductor.reconcile_once(now=t0 + 1)
    with monkeypatch.context() as patch:
        patch.setattr(reconcile.jobs, "job_status", lambda *a: (_ for _ in ()).throw(redis.ConnectionError()))
        with pytest.raises(redis.ConnectionError):
            conductor.reconcile_once(now=t0 + 5)
    beat(redis_conn, "w1", t0 + 10)
    assert conductor.reconcile_once(now=t0 + 12) == 0  # the suspicion of t0 + 1 did not survive
    assert conductor.reconcile_once(now=t0 + 21) == 0
    assert conductor.reconcile_once(now=t0 + 22) == 1


def test_it_counts_no_silence_from_before_a_pass_that_could_not_see_redis(
    conductor, redis_conn, generation, t0, monkeypatch
) -> None:
    running_on(conductor, redis_conn, generation, t0)
    with monkeypatch.context() as patch:
        patch.setattr(
            reconcile.heartbeats, "workers", lambda *a, **k: (_ for _ in ()).throw(redis.ConnectionError())
        )
        with pytest.raises(redis.ConnectionError):
            conductor.reconcile_once(now=t0 + 20)  # Redis down: nobody could beat
    assert conductor.reconcile_once(now=t0 + 45) == 0  # back: silence counts from here
    assert conductor.reconcile_once(now=t0 + 84) == 0
    assert conductor.reconcile_once(now=t0 + 86) == 1


def test_a_live_heartbeat_wins_over_a_vanished_rq_job_and_the_record_is_rebuilt(
    conductor, redis_conn, generation, t0
) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    redis_conn.flushdb()  # Redis lost everything; the worker beats on
    for later in (1, 6, 11, 16, 30):
        beat(redis_conn, "w1", t0 + later, g)
        assert conductor.reconcile_once(now=t0 + later) == 0
    job = rq_job(redis_conn, g)
    assert job.get_status() == JobStatus.STARTED and job.kwargs["attempt"] == 1
    assert job.id in StartedJobRegistry("video", connection=redis_conn).get_job_ids()
    g.refresh_from_db()
    assert (g.status, g.attempt) == (S.RUNNING, 1)


def test_a_rebuilt_record_leaves_the_started_registry_when_the_worker_ends_the_job(
    conductor, redis_conn, generation, t0
) -> None:
    from gpu_worker.horse import HorseWorker

    g = running_on(conductor, redis_conn, generation, t0)
    redis_conn.flushdb()
    beat(redis_conn, "w1", t0 + 1, g)
    conductor.reconcile_once(now=t0 + 1)  # rebuilt
    worker = HorseWorker([jobs.queue("video", redis_conn)], connection=redis_conn, serializer=JSONSerializer)
    with redis_conn.pipeline() as pipe:
        worker.cleanup_execution(rq_job(redis_conn, g), pipe)  # what the work-horse does at the end
        pipe.execute()
    assert StartedJobRegistry("video", connection=redis_conn).get_job_ids() == []


def test_it_enqueues_again_a_job_that_vanished_before_any_worker_took_it(
    conductor, redis_conn, generation, t0
) -> None:
    conductor.dispatch_once()
    redis_conn.flushdb()
    assert conductor.consume_once(block_ms=10) == 0  # the events group is recreated
    assert conductor.reconcile_once(now=t0) == 0
    assert conductor.reconcile_once(now=t0 + 10) == 0  # nothing ran, nothing is lost
    generation.refresh_from_db()
    assert (generation.status, generation.attempt) == (S.DISPATCHED, 1)
    assert redis_conn.lrange("rq:queue:video", 0, -1) == [protocol.job_id(generation.pk, 1).encode()]
    assert rq_job(redis_conn, generation).kwargs["attempt"] == 1


def test_it_gives_up_after_the_last_attempt(conductor, redis_conn, generation, settings, t0) -> None:
    settings.MAX_ATTEMPTS = 1
    running_on(conductor, redis_conn, generation, t0)
    conductor.reconcile_once(now=t0 + 31)
    conductor.reconcile_once(now=t0 + 41)
    generation.refresh_from_db()
    assert generation.status == S.FAILED and generation.retriable
    assert "lost 1 times" in generation.error_message


def test_it_ignores_events_of_the_lost_attempt(conductor, redis_conn, generation, t0) -> None:
    running_on(conductor, redis_conn, generation, t0)
    conductor.reconcile_once(now=t0 + 31)
    conductor.reconcile_once(now=t0 + 41)
    conductor.dispatch_once()
    late = {"type": "succeeded", "generation_id": generation.pk, "attempt": 1, "worker": "w1"}
    assert attempts.event_apply(late) is None


def test_it_redispatches_a_job_taken_by_a_worker_that_died_at_once(
    conductor, redis_conn, generation, t0
) -> None:
    conductor.dispatch_once()
    redis_conn.lmove("rq:queue:video", "rq:queue:video:intermediate")  # what a dequeue does first
    conductor.reconcile_once(now=t0)
    assert conductor.reconcile_once(now=t0 + 10) == 1


# --- RQ's registries follow the database ---------------------------------------------------------


def test_a_lost_attempt_reads_failed_in_rq_not_started(conductor, redis_conn, generation, t0) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    job = rq_job(redis_conn, g)
    job.set_status(JobStatus.STARTED)
    conductor.reconcile_once(now=t0 + 31)
    conductor.reconcile_once(now=t0 + 41)
    job = rq_job(redis_conn, g, 1)
    assert job.get_status() == JobStatus.FAILED and "lost: no heartbeat" in job.latest_result().exc_string
    assert job.id in FailedJobRegistry("video", connection=redis_conn).get_job_ids()
    assert job.id not in StartedJobRegistry("video", connection=redis_conn).get_job_ids()
    assert redis_conn.llen("rq:queue:video") == 0


def test_a_cancelled_running_attempt_reads_canceled_in_rq(conductor, redis_conn, generation, t0) -> None:
    g = running_on(conductor, redis_conn, generation, t0)
    rq_job(redis_conn, g).set_status(JobStatus.STARTED)
    assert services.generation_cancel(generation=g)
    job = rq_job(redis_conn, g, 1)
    assert job.get_status() == JobStatus.CANCELED
    assert job.id in CanceledJobRegistry("video", connection=redis_conn).get_job_ids()


# --- the leader ----------------------------------------------------------------------------------


@pytest.fixture
def pair(redis_conn, settings):  # type: ignore[no-untyped-def]
    settings.CONDUCTOR_LEADER_TTL = 1
    leader, standby = Conductor(connection=redis_conn), Conductor(connection=redis_conn)
    yield leader, standby
    leader.resign()
    standby.resign()


def freeze(conductor: Conductor) -> None:
    """What a SIGSTOP does to the lease: no more renewals, nothing released."""
    conductor.lease._stop.set()
    conductor.lease._thread.join()


def test_the_leader_keeps_its_lease_from_its_own_thread(pair) -> None:
    leader, standby = pair
    assert leader.lead() and not standby.lead()
    time.sleep(1.6)  # the leader's loop did nothing meanwhile (a long pass)
    assert leader.acting(verify=True) and not standby.lead()


def test_a_standby_takes_over_as_soon_as_the_lease_lapses(pair) -> None:
    leader, standby = pair
    assert leader.lead()
    freeze(leader)
    started = time.monotonic()
    while not standby.lead():
        time.sleep(0.05)
    assert time.monotonic() - started < 1.5  # the TTL, not more
    assert standby.lease.epoch > leader.lease.epoch


def test_a_paused_old_leader_cannot_act_after_losing_its_lease(pair, redis_conn, generation) -> None:
    leader, standby = pair
    assert leader.lead()
    freeze(leader)
    time.sleep(1.1)
    assert standby.lead()
    # The old leader wakes up mid-pass: it dispatches nothing and applies no event.
    with pytest.raises(LeadershipLost):
        leader.dispatch_once()
    generation.refresh_from_db()
    assert generation.status == S.QUEUED
    event = {"type": "started", "generation_id": generation.pk, "attempt": 0, "worker": "w1"}
    redis_conn.xadd(protocol.EVENTS_STREAM, {"data": json.dumps(event)})
    with pytest.raises(LeadershipLost):
        leader.consume_once(block_ms=10)
    assert redis_conn.xpending(protocol.EVENTS_STREAM, GROUP)["pending"] == 1  # left for the new leader
    assert standby.dispatch_once() == 1
