from __future__ import annotations

import json
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import av
import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from gpu_worker import protocol

from .conftest import ROOT, signed

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import Upload, UploadServer

pytestmark = pytest.mark.e2e
PARAMS = {"prompt": "a paper boat in the rain", "seed": 3, "frames": 6, "width": 64, "height": 48, "fps": 12}


@dataclass
class WorkedQueue:
    """What one `gpu-worker run --burst` left behind, copied out of Redis before other tests clean it."""

    generation_id: int
    worker: str
    stderr: str
    events: dict[int, list[dict[str, Any]]]  # attempt -> its events, in stream order
    results: dict[int, tuple[str, Any]]  # attempt -> (RQ status, return value)
    uploads: list[Upload]


@pytest.fixture(scope="module")
def worked(
    redis: Redis, redis_url: str, http_server: UploadServer, worker_python: str, worker_env: dict[str, str]
) -> WorkedQueue:
    """Attempt 1 renders fine; attempt 2 has an odd width and must fail cleanly."""
    http_server.reset()
    suffix = uuid4().hex
    queue_name, stream, worker = f"test-gpu-{suffix}", f"test:gpu:events:{suffix}", f"test-gpu-{suffix}"
    generation_id = random.randrange(10**6, 10**9)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    for attempt, params in ((1, PARAMS), (2, {**PARAMS, "width": 63})):
        kwargs = {
            "generation_id": generation_id,
            "attempt": attempt,
            "template": "boat",
            "workflow": {},
            "params": params,
            "upload_url": http_server.url(),
        }
        job_id = protocol.job_id(generation_id, attempt)
        queue.enqueue(protocol.JOB_FUNCTION, kwargs=signed(kwargs, job_id), job_id=job_id)
    command = [worker_python, "-m", "gpu_worker", "run", "--burst", "--redis-url", redis_url]
    command += ["--queues", queue_name, "--events-stream", stream, "--name", worker]
    try:
        proc = subprocess.run(command, cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr
        events: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for _, fields in redis.xrange(stream):
            event = json.loads(fields[b"data"])
            events[event["attempt"]].append(event)
        results = {}
        for attempt in (1, 2):
            job_id = protocol.job_id(generation_id, attempt)
            job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
            results[attempt] = (job.get_status(), job.return_value())
        return WorkedQueue(generation_id, worker, proc.stderr, events, results, list(http_server.uploads))
    finally:
        keys = [*redis.scan_iter(f"*{queue_name}*"), *redis.scan_iter(f"*gen-{generation_id}-*"), stream]
        redis.delete(*keys)


def test_it_reports_started_progress_then_succeeded(worked: WorkedQueue) -> None:
    types = [e["type"] for e in worked.events[1]]
    assert types[0] == protocol.STARTED and types[-1] == protocol.SUCCEEDED
    # The synthetic backend also sends preview frames now, as the ComfyUI backend does.
    assert protocol.PROGRESS in types and set(types[1:-1]) <= {protocol.PROGRESS, protocol.PREVIEW}
    percents = [e["percent"] for e in worked.events[1] if e["type"] == protocol.PROGRESS]
    assert percents == sorted(percents) and percents[-1] <= 100
    assert worked.events[1][-1]["outputs"] == [f"boat-g{worked.generation_id}-a1.mp4"]
    assert {e["worker"] for e in worked.events[1]} == {worked.worker}


def test_it_reports_the_final_frame(worked: WorkedQueue) -> None:
    steps = [(e["step"], e["steps"]) for e in worked.events[1] if e["type"] == protocol.PROGRESS]
    assert (6, 6) in steps


def test_it_uploads_a_playable_video(worked: WorkedQueue, tmp_path: Path) -> None:
    [upload] = worked.uploads
    assert upload.path == f"/uploads/signed-token/boat-g{worked.generation_id}-a1.mp4"
    assert upload.headers["content-type"] == "video/mp4"
    assert upload.headers[protocol.WORKER_HEADER.lower()] == worked.worker
    (tmp_path / "v.mp4").write_bytes(upload.body)
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == PARAMS["frames"]


def test_it_fails_bad_params_without_retry(worked: WorkedQueue) -> None:
    failed = worked.events[2][-1]
    assert [e["type"] for e in worked.events[2]] == [protocol.STARTED, protocol.FAILED]
    assert (failed["message"], failed["retriable"]) == ("Parameter width must be even, got 63.", False)
    assert worked.results[2] == (
        "finished",
        {"status": "failed", "message": failed["message"], "retriable": False},
    )


def test_it_finishes_the_rq_job_with_the_outputs(worked: WorkedQueue) -> None:
    outputs = [f"boat-g{worked.generation_id}-a1.mp4"]
    assert worked.results[1] == ("finished", {"status": "succeeded", "outputs": outputs})


def test_it_starts_the_next_job_quickly(worked: WorkedQueue) -> None:
    # Forked work-horses inherit torch and av from the parent; re-importing them costs ~3 s a job.
    gap = worked.events[2][0]["ts"] - worked.events[1][-1]["ts"]
    assert gap < 1.0


def test_it_logs_one_line_per_job_start_and_finish(worked: WorkedQueue) -> None:
    logged = re.findall(rf"generation {worked.generation_id} attempt (\d) \(boat\): (\w+)", worked.stderr)
    assert logged == [("1", "started"), ("1", "succeeded"), ("2", "started"), ("2", "failed")]
    assert "signed-token" not in worked.stderr
