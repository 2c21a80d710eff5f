"""Warming up: no job until ComfyUI answers, launching it, and going back after it dies."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from gpu_worker import protocol
from gpu_worker.backends.comfyui import ComfyUIBackend
from gpu_worker.warmup import Gate, GatedWorker, Launcher

from .conftest import ROOT, signed, wait_for
from .fake_comfyui import FakeComfyUI, run

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer


def test_it_waits_until_comfyui_answers(closed_port: int) -> None:
    gate = Gate(ComfyUIBackend(url=f"http://127.0.0.1:{closed_port}"), backoff=(0.05,))
    fake = FakeComfyUI(closed_port)
    threading.Timer(0.3, fake.start).start()
    try:
        assert gate.warming
        started = time.monotonic()
        assert gate.wait() is True
        assert not gate.warming and time.monotonic() - started >= 0.25
    finally:
        fake.stop()


def test_it_stops_waiting_when_asked(closed_port: int) -> None:
    gate = Gate(ComfyUIBackend(url=f"http://127.0.0.1:{closed_port}"), backoff=(0.01,))
    assert gate.wait(should_stop=lambda: True) is False
    assert gate.warming


def test_it_launches_comfyui_with_the_configured_command(closed_port: int, tmp_path: Any) -> None:
    command = f"{sys.executable} {ROOT / 'tests' / 'gpu_worker' / 'fake_comfyui.py'} --port {closed_port}"
    launcher = Launcher(command, tmp_path / "comfyui.log")
    gate = Gate(ComfyUIBackend(url=f"http://127.0.0.1:{closed_port}"), launcher=launcher, backoff=(0.1,))
    try:
        assert gate.wait() is True
        process = launcher.process
    finally:
        launcher.stop()
    assert process is not None and process.poll() is not None
    assert "fake ComfyUI at" in (tmp_path / "comfyui.log").read_text()


# --- A real `gpu-worker run --backend comfyui` ----------------------------------------------


@dataclass
class Seen:
    states: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""


def test_it_stops_listening_for_commands_at_once(redis: Redis) -> None:
    worker = GatedWorker([Queue(f"q-{uuid4().hex}", connection=redis)], connection=redis)
    worker.subscribe()
    try:
        # RQ's teardown unsubscribes, then stops the thread: once the thread has heard the
        # unsubscription, its next poll waits for a subscription that never comes.
        worker.pubsub.unsubscribe()
        time.sleep(0.3)
    finally:
        started = time.monotonic()
        worker.unsubscribe()
    assert time.monotonic() - started < 5  # RQ's own poll made it 60 s


@pytest.fixture(scope="module")
def lifecycle(
    redis: Redis, redis_url: str, http_server: UploadServer, worker_python: str, worker_env: dict[str, str]
) -> Seen:
    """ComfyUI down at start, then up; a job; ComfyUI dies mid-job; then it comes back."""
    http_server.reset()
    seen, suffix = Seen(), uuid4().hex
    queue_name, stream, name = f"test-comfy-{suffix}", f"test:comfy:events:{suffix}", f"test-comfy-{suffix}"
    with socket.socket() as probe:  # a free port, for a ComfyUI that is not there yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeComfyUI(port, scale=0.2)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    env = {**worker_env, "GPU_WORKER_HEARTBEAT_S": "0.1", "COMFYUI_DEAD_AFTER": "0.5"}
    command = [worker_python, "-m", "gpu_worker", "run", "--backend", "comfyui", "--redis-url", redis_url]
    command += ["--comfyui-url", f"http://127.0.0.1:{port}", "--queues", queue_name, "--name", name]
    proc = subprocess.Popen(
        [*command, "--events-stream", stream], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )

    def state() -> str:
        return (redis.hget(protocol.worker_key(name), "state") or b"").decode()

    def events() -> list[dict[str, Any]]:
        return [json.loads(fields[b"data"]) for _, fields in redis.xrange(stream)]

    def enqueue(generation_id: int, workflow: dict[str, Any]) -> None:
        kwargs = {"generation_id": generation_id, "attempt": 1, "template": "t", "workflow": workflow}
        kwargs |= {"params": {}, "upload_url": http_server.url(), "timeout": 60}
        job_id = protocol.job_id(generation_id, 1)
        queue.enqueue(protocol.JOB_FUNCTION, kwargs=signed(kwargs, job_id), job_id=job_id)

    try:
        seen.states.append(wait_for(state))
        enqueue(1, run("05_video_mp4").workflow)
        time.sleep(0.5)
        seen.states.append(state())  # still warming: the job waits in the queue
        fake.start()
        wait_for(lambda: any(e["type"] in ("succeeded", "failed") for e in events()))
        seen.states.append(wait_for(lambda: state() == "idle" and "idle"))
        slow = run("27_canonical_workflows_check#9")
        fake.plan(slow, die_at=slow.index("executing", "3"))
        enqueue(2, slow.workflow)
        wait_for(lambda: [e for e in events() if e["generation_id"] == 2 and e["type"] == "failed"])
        seen.states.append(wait_for(lambda: state() == "warming" and "warming"))
        fake.restart()
        seen.states.append(wait_for(lambda: state() == "idle" and "idle"))
        seen.events = events()
    finally:
        proc.send_signal(signal.SIGTERM)
        seen.stderr = proc.communicate(timeout=20)[1]
        fake.stop()
        redis.delete(stream, *redis.scan_iter(f"*{queue_name}*"))
    return seen


def test_it_reports_warming_until_comfyui_answers(lifecycle: Seen) -> None:
    assert lifecycle.states[:3] == ["warming", "warming", "idle"]


def test_it_runs_the_job_that_waited(lifecycle: Seen, http_server: UploadServer) -> None:
    first = [e for e in lifecycle.events if e["generation_id"] == 1]
    assert [first[0]["type"], first[-1]["type"]] == ["started", "succeeded"]
    assert first[-1]["outputs"] == ["t-g1-a1.mp4"]


def test_it_fails_retriable_and_warms_up_again_when_comfyui_dies(lifecycle: Seen) -> None:
    failed = [e for e in lifecycle.events if e["generation_id"] == 2][-1]
    assert failed["retriable"] is True
    assert failed["message"].startswith("ComfyUI stopped answering in the middle of the generation")
    assert lifecycle.states[3:] == ["warming", "idle"]


def test_it_logs_the_warm_up(lifecycle: Seen) -> None:
    assert "warming up: ComfyUI at" in lifecycle.stderr
    assert "backend comfyui is ready" in lifecycle.stderr
