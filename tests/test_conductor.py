from __future__ import annotations

import json

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from generations.dispatch import attempts
from generations.dispatch.conductor import GROUP, Conductor
from generations.models import Generation
from gpu_worker import protocol

S = Generation.Status


@pytest.fixture
def conductor(redis_conn) -> Conductor:
    return Conductor(connection=redis_conn)


def emit(redis_conn, g: Generation, kind: str, attempt: int | None = None, **fields: object) -> None:
    event = {"type": kind, "generation_id": g.pk, "attempt": attempt or g.attempt, "worker": "w1", **fields}
    redis_conn.xadd(protocol.EVENTS_STREAM, {"data": json.dumps(event)})


def test_it_enqueues_a_json_job_by_dotted_path(conductor, redis_conn, generation) -> None:
    assert conductor.dispatch_once() == 1
    generation.refresh_from_db()
    job = Job.fetch(protocol.job_id(generation.pk, 1), connection=redis_conn, serializer=JSONSerializer)
    assert job.func_name == protocol.JOB_FUNCTION and job.origin == "video"
    assert job.kwargs["attempt"] == 1 and job.kwargs["params"]["prompt"] == "a lighthouse"
    assert job.kwargs["upload_url"].startswith("http://") and generation.status == S.DISPATCHED


def test_it_does_not_dispatch_twice(conductor, generation) -> None:
    conductor.dispatch_once()
    assert conductor.dispatch_once() == 0


def test_it_reads_the_queue_only_when_a_gpu_can_take_a_job(
    conductor, redis_conn, generation, settings
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    settings.DISPATCH_PREFETCH = 0  # nothing waits in RQ beyond an idle GPU
    beat = {"name": "gpu-1", "state": "busy", "queues": "video", "ts": timezone.now().timestamp()}
    redis_conn.hset(protocol.worker_key("gpu-1"), mapping=beat)
    redis_conn.sadd(protocol.WORKERS_SET, "gpu-1")
    with CaptureQueriesContext(connection) as queries:
        assert conductor.dispatch_once() == 0
    # Every GPU busy: no query read the waiting jobs themselves (their parameters, their templates).
    assert not [q["sql"] for q in queries if '"params"' in q["sql"]]
    redis_conn.hset(protocol.worker_key("gpu-1"), mapping={"state": "idle", "ts": timezone.now().timestamp()})
    assert conductor.dispatch_once() == 1
    generation.refresh_from_db()
    assert generation.status == S.DISPATCHED


def test_it_applies_and_acknowledges_events(conductor, redis_conn, generation) -> None:
    conductor.dispatch_once()
    generation.refresh_from_db()
    for kind in ("started", "progress", "succeeded"):
        emit(redis_conn, generation, kind, percent=50)
    while conductor.consume_once(block_ms=10):
        pass
    generation.refresh_from_db()
    assert generation.status == S.SUCCEEDED
    assert redis_conn.xpending(protocol.EVENTS_STREAM, GROUP)["pending"] == 0


def test_it_applies_a_replayed_sequence_idempotently(conductor, redis_conn, generation) -> None:
    conductor.dispatch_once()
    generation.refresh_from_db()
    sequence = ["progress", "started", "progress", "succeeded", "progress", "succeeded"]
    for i, kind in enumerate(sequence):
        emit(redis_conn, generation, kind, percent=10 * i)
    emit(redis_conn, generation, "failed", attempt=0, message="an older attempt")
    while conductor.consume_once(block_ms=10):
        pass
    generation.refresh_from_db()
    assert (generation.status, generation.progress, generation.error_message) == (S.SUCCEEDED, 100, "")


def test_it_replays_events_left_unacknowledged_by_a_crash(redis_conn, generation, monkeypatch) -> None:
    first = Conductor(connection=redis_conn)
    first.dispatch_once()
    generation.refresh_from_db()
    emit(redis_conn, generation, "succeeded")
    crash = lambda event, host=None: (_ for _ in ()).throw(RuntimeError("crash"))  # noqa: E731
    monkeypatch.setattr(attempts, "event_apply", crash)
    with pytest.raises(RuntimeError):
        first.consume_once(block_ms=10)
    monkeypatch.undo()
    Conductor(connection=redis_conn).consume_once(block_ms=10)
    generation.refresh_from_db()
    assert generation.status == S.SUCCEEDED


def test_it_drops_an_unreadable_event(conductor, redis_conn) -> None:
    redis_conn.xadd(protocol.EVENTS_STREAM, {"data": b"not json"})
    assert conductor.consume_once(block_ms=10) == 1
    assert redis_conn.xpending(protocol.EVENTS_STREAM, GROUP)["pending"] == 0


def test_it_drops_an_invalid_event_from_a_host_and_goes_on(acl_redis, generation) -> None:
    from generations.fleet.hosts import host_enrol
    from generations.models import SecurityEvent

    host = host_enrol(name="h1", kind="local").host
    conductor = Conductor(connection=acl_redis.admin())
    conductor.streams.refresh()  # as run() does first
    conductor.dispatch_once()
    stream = protocol.host_events_stream(host.username)
    bad = {"type": "progress", "generation_id": generation.pk, "attempt": 1, "worker": host.username}
    acl_redis.admin().xadd(stream, {"data": json.dumps({**bad, "percent": 1.0}).replace("1.0", "1e999")})
    good = {
        "type": "started",
        "generation_id": generation.pk,
        "attempt": 1,
        "worker": host.username,
        "ts": 1.0,
    }
    acl_redis.admin().rpop("rq:queue:video")  # the host took the job
    acl_redis.admin().xadd(stream, {"data": json.dumps(good)})
    assert conductor.consume_once(block_ms=10) == 2
    generation.refresh_from_db()
    assert generation.status == "running" and generation.host == host
    assert SecurityEvent.objects.filter(kind="invalid-event", host=host).exists()
