"""Who a worker says it is, and the serverless mode: idle exit, max jobs, drain, health."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen
from uuid import uuid4

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from gpu_worker import protocol
from gpu_worker.cli import build_parser

from .conftest import ROOT, signed, wait_for
from .fake_comfyui import FakeComfyUI

if TYPE_CHECKING:
    from argparse import Namespace

    from tests.gpu_worker.conftest import Upload, UploadServer

ENV_VARS = (
    "GPU_WORKER_PROVIDER",
    "GPU_WORKER_PRICE_PER_HOUR",
    "GPU_WORKER_BILLING_SECONDS",
    "GPU_WORKER_TEMPLATES",
    "GPU_WORKER_IDLE_EXIT_S",
    "GPU_WORKER_MAX_JOBS",
    "GPU_WORKER_HEALTH_PORT",
)


# --- Flags -----------------------------------------------------------------------------------


@pytest.fixture
def parse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    # build_parser reads the environment, so each call sees the variables set by then.
    yield lambda *argv: build_parser().parse_args(["run", *argv])


def test_it_defaults_to_a_free_local_worker_that_never_exits(parse: Any) -> None:
    args: Namespace = parse()
    assert (args.provider, args.price_per_hour, args.billing_seconds, args.templates) == ("local", 0, 1, [])
    assert (args.idle_exit_seconds, args.max_jobs, args.health_port) == (None, None, None)


def test_it_takes_the_identity_and_serverless_flags(parse: Any) -> None:
    args = parse("--provider", "verda-instance", "--price-per-hour", "1.8", "--billing-seconds", "600")
    assert (args.provider, args.price_per_hour, args.billing_seconds) == ("verda-instance", 1.8, 600)
    args = parse("--templates", "boat, ltx", "--idle-exit-seconds", "90", "--max-jobs", "3")
    assert (args.templates, args.idle_exit_seconds, args.max_jobs) == (["boat", "ltx"], 90, 3)


def test_it_reads_the_environment(parse: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_WORKER_PROVIDER", "runpod-serverless")
    monkeypatch.setenv("GPU_WORKER_PRICE_PER_HOUR", "2.99")
    monkeypatch.setenv("GPU_WORKER_HEALTH_PORT", "8080")
    monkeypatch.setenv("GPU_WORKER_MAX_JOBS", "5")
    args = parse()
    assert (args.provider, args.price_per_hour, args.health_port, args.max_jobs) == (
        "runpod-serverless",
        2.99,
        8080,
        5,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "aws"], "--provider: expected one of verda-instance, verda-serverless, runpod-"),
        (["--price-per-hour", "-1"], "--price-per-hour: expected a number at least 0, got '-1'"),
        (["--price-per-hour", "nan"], "--price-per-hour: expected a number at least 0, got 'nan'"),
        (["--billing-seconds", "0"], "--billing-seconds: expected a whole number at least 1, got '0'"),
        (["--billing-seconds", "1.5"], "--billing-seconds: expected a whole number, got '1.5'"),
        (["--idle-exit-seconds", "0"], "--idle-exit-seconds: expected a number at least 1, got '0'"),
        (["--max-jobs", "0"], "--max-jobs: expected a whole number at least 1, got '0'"),
        (["--health-port", "70000"], "--health-port: expected a whole number from 1 to 65535"),
    ],
)
def test_it_refuses_bad_values(
    parse: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_it_refuses_a_bad_environment_value(
    parse: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPU_WORKER_BILLING_SECONDS", "ten")
    with pytest.raises(SystemExit):
        parse()
    assert "--billing-seconds: expected a whole number, got 'ten'" in capsys.readouterr().err


# --- A real `gpu-worker run` -----------------------------------------------------------------


@dataclass
class Worker:
    """One `gpu-worker run` on its own queue, events stream and heartbeat."""

    redis: Redis
    upload_url: str
    suffix: str = field(default_factory=lambda: uuid4().hex)
    generation_id: int = field(default_factory=lambda: random.randrange(10**6, 10**9))
    proc: subprocess.Popen[str] | None = None

    @property
    def name(self) -> str:
        return f"test-serverless-{self.suffix}"

    @property
    def stream(self) -> str:
        return f"test:serverless:events:{self.suffix}"

    @property
    def queue(self) -> Queue:
        return Queue(self.name, connection=self.redis, serializer=JSONSerializer)

    def start(self, python: str, env: dict[str, str], redis_url: str, *flags: str) -> Worker:
        command = [python, "-m", "gpu_worker", "run", "--redis-url", redis_url, "--queues", self.name]
        command += ["--name", self.name, "--events-stream", self.stream, *flags]
        env = {**env, "GPU_WORKER_HEARTBEAT_S": "0.1"}
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        return self

    def enqueue(self, attempt: int, frames: int) -> str:
        params = {"prompt": "a kite", "seed": attempt, "frames": frames, "width": 32, "height": 32, "fps": 8}
        kwargs = {"generation_id": self.generation_id, "attempt": attempt, "template": "kite"}
        kwargs |= {"workflow": {}, "params": params, "upload_url": self.upload_url}
        job_id = protocol.job_id(self.generation_id, attempt)
        self.queue.enqueue(protocol.JOB_FUNCTION, kwargs=signed(kwargs, job_id), job_id=job_id)
        return job_id

    def heartbeat(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(protocol.worker_key(self.name)).items()}

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(fields[b"data"]) for _, fields in self.redis.xrange(self.stream)]

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        assert self.proc is not None
        _, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stderr

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        keys = [
            *self.redis.scan_iter(f"*{self.name}*"),
            *self.redis.scan_iter(f"*gen-{self.generation_id}-*"),
        ]
        self.redis.delete(self.stream, *keys)


@pytest.fixture
def worker(redis: Redis, http_server: UploadServer) -> Iterator[Worker]:
    http_server.reset()
    made = Worker(redis, http_server.url())
    yield made
    made.cleanup()


@dataclass
class Drained:
    identity: dict[str, str]
    states: list[str]
    returncode: int
    stderr: str
    events: list[dict[str, Any]]
    queued: list[str]
    uploads: list[Upload]
    second: str


@pytest.fixture(scope="module")
def drained(
    redis: Redis, redis_url: str, http_server: UploadServer, worker_python: str, worker_env: dict[str, str]
) -> Drained:
    """A worker is told to stop (SIGTERM) as a three-second job starts, with another job queued."""
    http_server.reset()
    worker = Worker(redis, http_server.url())
    flags = ["--provider", "runpod-serverless", "--price-per-hour", "2.99", "--templates", "kite"]
    worker.start(worker_python, worker_env, redis_url, "--synthetic-frame-delay", "0.25", *flags)
    try:
        # Ready, and its GPU known: the timeouts only matter on a machine under heavy load.
        identity = wait_for(
            lambda: (b := worker.heartbeat()).get("state") == "idle" and b.get("gpu") and b, 60
        )
        worker.enqueue(1, frames=12)  # three seconds of frames
        second = worker.enqueue(2, frames=2)
        wait_for(lambda: [e for e in worker.events() if e["type"] == "started"], timeout=30)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        states = []
        while worker.proc.poll() is None:
            states.append(worker.heartbeat().get("state", ""))
            time.sleep(0.05)
        returncode, stderr = worker.finish()
        return Drained(
            identity,
            states,
            returncode,
            stderr,
            worker.events(),
            worker.queue.job_ids,
            list(http_server.uploads),
            Job.fetch(second, connection=redis, serializer=JSONSerializer).get_status(),
        )
    finally:
        worker.cleanup()


@pytest.mark.e2e
def test_it_says_who_it_is_in_the_heartbeat(drained: Drained) -> None:
    fields = {k: drained.identity[k] for k in ("provider", "price_per_hour", "billing_seconds", "templates")}
    assert fields == {
        "provider": "runpod-serverless",
        "price_per_hour": "2.99",
        "billing_seconds": "1",
        "templates": "kite",
    }
    assert drained.identity["gpu"] not in ("", "unknown")  # "cpu" where there is no CUDA GPU


@pytest.mark.e2e
def test_it_finishes_the_running_job_after_sigterm(drained: Drained) -> None:
    advisory = ("progress", "preview")
    assert [(e["attempt"], e["type"]) for e in drained.events if e["type"] not in advisory] == [
        (1, "started"),
        (1, "succeeded"),
    ]
    assert [upload.path.rsplit("/", 1)[-1] for upload in drained.uploads] == [
        drained.events[-1]["outputs"][0]
    ]


@pytest.mark.e2e
def test_it_leaves_the_next_job_in_the_queue(drained: Drained) -> None:
    assert drained.queued == [protocol.job_id(drained.events[0]["generation_id"], 2)]
    assert drained.second == "queued"


@pytest.mark.e2e
def test_it_says_draining_meanwhile_then_exits_0(drained: Drained) -> None:
    # The first reads may still show the beat from before the job; from "draining" on, nothing else.
    after = drained.states[drained.states.index("draining") :]
    assert set(after) <= {"draining", ""}, drained.states  # "": the heartbeat said goodbye
    assert drained.returncode == 0, drained.stderr
    assert "drained: exiting" in drained.stderr, drained.stderr


@pytest.mark.e2e
def test_it_exits_when_idle(
    worker: Worker, redis_url: str, worker_python: str, worker_env: dict[str, str]
) -> None:
    worker.start(worker_python, worker_env, redis_url, "--idle-exit-seconds", "1")
    returncode, stderr = worker.finish()
    assert returncode == 0, stderr
    assert "idle for 1 s with no job: exiting" in stderr
    assert not worker.heartbeat()


@pytest.mark.e2e
def test_it_exits_after_max_jobs(
    worker: Worker,
    redis_url: str,
    worker_python: str,
    worker_env: dict[str, str],
    upload_server: UploadServer,
) -> None:
    worker.enqueue(1, frames=2)
    second = worker.enqueue(2, frames=2)
    worker.start(worker_python, worker_env, redis_url, "--max-jobs", "1")
    returncode, stderr = worker.finish()
    assert returncode == 0, stderr
    assert "reached --max-jobs (1 jobs): exiting" in stderr
    assert (len(upload_server.uploads), worker.queue.job_ids) == (1, [second])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(port: int) -> tuple[int, dict[str, Any]] | None:
    """The answer of ``GET /health``; None while nothing listens."""
    try:
        with urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except URLError:
        return None


@pytest.mark.e2e
def test_it_reports_healthy_only_once_comfyui_answers(
    worker: Worker, redis_url: str, worker_python: str, worker_env: dict[str, str]
) -> None:
    comfy_port, health_port = free_port(), free_port()
    fake = FakeComfyUI(comfy_port)
    flags = ["--backend", "comfyui", "--comfyui-url", f"http://127.0.0.1:{comfy_port}"]
    worker.start(worker_python, worker_env, redis_url, *flags, "--health-port", str(health_port))
    try:
        assert wait_for(lambda: health(health_port)) == (503, {"ready": False, "state": "warming"})
        fake.start()
        assert wait_for(lambda: (answer := health(health_port)) and answer[0] == 200 and answer) == (
            200,
            {"ready": True, "state": "idle"},
        )
    finally:
        fake.stop()
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
    assert worker.finish()[0] == 0


@pytest.mark.e2e
def test_it_stops_at_once_when_told_while_warming(
    worker: Worker, redis_url: str, worker_python: str, worker_env: dict[str, str], closed_port: int
) -> None:
    flags = ["--backend", "comfyui", "--comfyui-url", f"http://127.0.0.1:{closed_port}"]
    worker.start(worker_python, worker_env, redis_url, *flags)
    wait_for(lambda: worker.heartbeat().get("state") == "warming")
    time.sleep(1)  # into the gate's backoff
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.finish()[0] == 0
    assert time.monotonic() - started < 5
