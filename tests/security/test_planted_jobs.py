"""Attack 2: any job a Redis credential could enqueue ran on every GPU worker (RQ imports whatever
dotted path a job names). Now a worker runs only the generation job, signed by the conductor, and
refuses (and reports) anything else without importing it."""

from __future__ import annotations

import json
import zlib

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from generations.models import SecurityEvent
from gpu_worker import protocol
from tests.live import wait_for
from tests.security.conftest import submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_a_job_planted_or_edited_by_a_host_never_runs(
    stack, mallory, filmmaker, video_round, tmp_path
) -> None:
    marker = tmp_path / "pwned"
    queue = Queue("video", connection=mallory.redis, serializer=JSONSerializer)
    queue.enqueue("os.system", f"touch {marker}", job_id="planted-call")
    g = submit(filmmaker, video_round)
    succeeds(stack, g)
    # A signed job of ours, copied with its arguments altered (another upload URL, other params).
    data = mallory.redis.hget(f"rq:job:{protocol.job_id(g.pk, g.attempt)}", "data")
    _func, _instance, _args, kwargs = json.loads(zlib.decompress(data))
    altered = {**kwargs, "params": {**kwargs["params"], "prompt": "something else"}}
    queue.enqueue(protocol.JOB_FUNCTION, kwargs=altered, job_id=protocol.job_id(g.pk, g.attempt + 1))
    unsigned = {k: v for k, v in kwargs.items() if k != "job_signature"}
    queue.enqueue(protocol.JOB_FUNCTION, kwargs=unsigned, job_id="planted-unsigned")
    # Ours, unaltered, but asking RQ to import and call something when it ends.
    queue.enqueue(protocol.JOB_FUNCTION, kwargs=kwargs, job_id="planted-callback", on_success="os.getcwd")
    # A job hash RQ cannot even read: RQ's worker would quit on it.
    mallory.redis.hset("rq:job:planted-garbage", mapping={"data": b"\x80garbage", "created_at": "not a date"})
    mallory.redis.rpush("rq:queue:video", "planted-garbage")
    planted = ["planted-call", protocol.job_id(g.pk, g.attempt + 1), "planted-unsigned", "planted-callback"]
    wait_for(
        lambda: all(
            mallory.redis.hget(f"rq:job:{j}", "status") == b"failed" for j in [*planted, "planted-garbage"]
        ),
        timeout=30,
        what="the worker to refuse every planted job\n" + stack.log("honest"),
    )
    assert not marker.exists(), "a planted job ran"
    reported = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.REFUSED_JOB).values_list(
        "count", flat=True
    )
    # Reports are advisory and applied by the conductor in its own time (a job RQ hands out twice is
    # refused, and reported, twice).
    wait_for(lambda: sum(reported) >= 5, timeout=30, what="the worker to report the five refusals")
    # The worker is still there, and still works.
    succeeds(stack, submit(filmmaker, video_round, seed=4))
