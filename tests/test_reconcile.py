"""Worker loss, Redis losing its data, and conductor failover."""

from __future__ import annotations

import time

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from generations.dispatch import attempts
from generations.dispatch.conductor import Conductor
from generations.models import Generation
from gpu_worker import protocol
from gpu_worker.heartbeat import Heartbeat

S = Generation.Status
T0 = 1_000_000.0


@pytest.fixture
def conductor(redis_conn, settings) -> Conductor:
    settings.LOST_GRACE_SECONDS = 5
    return Conductor(connection=redis_conn)


def running_on(conductor, redis_conn, generation, worker: str = "w1") -> Generation:
    conductor.dispatch_once()
    generation.refresh_from_db()
    job_id = protocol.job_id(generation.pk, generation.attempt)
    Heartbeat(redis_conn, name=worker, queues=["video"], probe=lambda: ("busy", job_id)).beat()
    attempts.event_apply({"type": "started", "generation_id": generation.pk, "attempt": 1, "worker": worker})
    generation.refresh_from_db()
    return generation


def test_it_leaves_a_healthy_generation_alone(conductor, redis_conn, generation) -> None:
    running_on(conductor, redis_conn, generation)
    assert conductor.reconcile_once(now=T0) == 0
    assert conductor.reconcile_once(now=T0 + 60) == 0


def test_it_redispatches_when_the_worker_stops_heartbeating(conductor, redis_conn, generation) -> None:
    running_on(conductor, redis_conn, generation)
    redis_conn.delete(protocol.worker_key("w1"))
    assert conductor.reconcile_once(now=T0) == 0  # suspected, within the grace period
    assert conductor.reconcile_once(now=T0 + 6) == 1
    generation.refresh_from_db()
    assert (generation.status, generation.attempt) == (S.QUEUED, 1)
    assert redis_conn.exists(protocol.cancel_key(generation.pk, 1))  # in case it is alive after all
    conductor.dispatch_once()
    generation.refresh_from_db()
    assert (generation.status, generation.attempt) == (S.DISPATCHED, 2)


def test_it_forgives_a_worker_that_comes_back_within_the_grace(conductor, redis_conn, generation) -> None:
    running_on(conductor, redis_conn, generation)
    redis_conn.delete(protocol.worker_key("w1"))
    conductor.reconcile_once(now=T0)
    running_on(conductor, redis_conn, generation)
    assert conductor.reconcile_once(now=T0 + 6) == 0
    assert conductor.reconcile_once(now=T0 + 12) == 0


def test_it_redispatches_when_the_work_horse_died(conductor, redis_conn, generation) -> None:
    running_on(conductor, redis_conn, generation)
    job = Job.fetch(protocol.job_id(generation.pk, 1), connection=redis_conn, serializer=JSONSerializer)
    job.set_status(JobStatus.FAILED)
    conductor.reconcile_once(now=T0)
    assert conductor.reconcile_once(now=T0 + 6) == 1


def test_it_loses_no_generation_when_redis_loses_its_data(conductor, redis_conn, generation) -> None:
    conductor.dispatch_once()
    redis_conn.flushdb()
    assert conductor.consume_once(block_ms=10) == 0  # the events group is recreated
    conductor.reconcile_once(now=T0)
    assert conductor.reconcile_once(now=T0 + 6) == 1
    assert conductor.dispatch_once() == 1
    generation.refresh_from_db()
    assert (generation.status, generation.attempt) == (S.DISPATCHED, 2)


def test_it_gives_up_after_the_last_attempt(conductor, redis_conn, generation, settings) -> None:
    settings.MAX_ATTEMPTS = 1
    running_on(conductor, redis_conn, generation)
    redis_conn.delete(protocol.worker_key("w1"))
    conductor.reconcile_once(now=T0)
    conductor.reconcile_once(now=T0 + 6)
    generation.refresh_from_db()
    assert generation.status == S.FAILED and generation.retriable
    assert "lost 1 times" in generation.error_message


def test_it_ignores_events_of_the_lost_attempt(conductor, redis_conn, generation) -> None:
    running_on(conductor, redis_conn, generation)
    redis_conn.delete(protocol.worker_key("w1"))
    conductor.reconcile_once(now=T0)
    conductor.reconcile_once(now=T0 + 6)
    conductor.dispatch_once()
    late = {"type": "succeeded", "generation_id": generation.pk, "attempt": 1, "worker": "w1"}
    assert attempts.event_apply(late) is None


def test_a_standby_conductor_takes_over_when_the_leader_dies(redis_conn, settings) -> None:
    settings.CONDUCTOR_LEADER_TTL = 1
    leader, standby = Conductor(connection=redis_conn), Conductor(connection=redis_conn)
    assert leader.lead() and not standby.lead()
    assert leader.lead()  # renewing keeps it
    time.sleep(1.2)  # the leader stopped renewing: it died
    assert standby.lead() and not leader.lead()


def test_it_redispatches_a_job_taken_by_a_worker_that_died_at_once(conductor, redis_conn, generation) -> None:
    conductor.dispatch_once()
    redis_conn.lmove("rq:queue:video", "rq:queue:video:intermediate")  # what a dequeue does first
    conductor.reconcile_once(now=T0)
    assert conductor.reconcile_once(now=T0 + 6) == 1
