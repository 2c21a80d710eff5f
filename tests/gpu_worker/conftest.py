from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis import Redis
from redis.exceptions import RedisError

from gpu_worker import protocol, signing
from gpu_worker.backends import JobContext

from .fake_comfyui import FakeComfyUI

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Upload:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class UploadServer:
    """A local stand-in for the web app's upload endpoint; answers each PUT from ``statuses``."""

    port: int = 0
    uploads: list[Upload] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def url(self, prefix: str = "/uploads/signed-token/") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"

    def reset(self) -> None:
        self.uploads.clear()
        self.statuses.clear()


def _handler(recorder: UploadServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            recorder.uploads.append(Upload(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = recorder.statuses.pop(0) if recorder.statuses else 201
            reply = b"" if status < 400 else b"signature expired"
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def http_server() -> Iterator[UploadServer]:
    recorder = UploadServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()


@pytest.fixture
def upload_server(http_server: UploadServer) -> UploadServer:
    http_server.reset()
    return http_server


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        client.ping()
    except RedisError as exc:
        pytest.fail(f"The gpu_worker tests need Redis at REDIS_URL={redis_url}: {exc}")
    yield client
    client.close()


@pytest.fixture
def stream(redis: Redis) -> Iterator[str]:
    key = f"test:gpu-worker:events:{uuid4().hex}"
    yield key
    redis.delete(key)


@pytest.fixture
def read_events(redis: Redis, stream: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: [json.loads(fields[b"data"]) for _, fields in redis.xrange(stream)]


@pytest.fixture(scope="session")
def worker_python() -> str:
    python = Path(os.environ.get("GPU_WORKER_PYTHON", ROOT / ".venv-worker" / "bin" / "python"))
    if not python.exists():
        pytest.fail(f"No worker Python at {python}: create .venv-worker or set GPU_WORKER_PYTHON")
    return str(python)


# The conductor's key for these tests: workers run only jobs signed with it (gpu_worker.guard).
JOB_KEY = Ed25519PrivateKey.generate()


def signed(kwargs: dict[str, Any], job_id: str) -> dict[str, Any]:
    """``kwargs`` of a generation job with the signature the conductor would add."""
    signature = signing.sign(JOB_KEY, job_id=job_id, function=protocol.JOB_FUNCTION, kwargs=kwargs, ttl=600)
    return {**kwargs, signing.SIGNATURE_KWARG: signature}


@pytest.fixture(scope="session")
def worker_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SYNTHETIC_FRAME_DELAY": "0",
        "JOB_VERIFY_KEY": signing.public_key_text(JOB_KEY),
    }


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    """A fake ComfyUI replaying the recorded traces, on its own port, fresh for each test.

    Recorded gaps are played at a third of their length: the order is what the tests rely on."""
    fake = FakeComfyUI(scale=0.3).start()
    yield fake
    fake.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """The first truthy value of ``condition()``, polled every 50 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@dataclass
class Sinks:
    """What a backend reported through its JobContext."""

    progress: list[tuple[float, int | None, int | None, str]] = field(default_factory=list)
    previews: list[tuple[bytes, str]] = field(default_factory=list)
    cancel_when: Callable[[Sinks], bool] = lambda sinks: False
    cancelled_at: float | None = None

    def is_cancelled(self) -> bool:
        if self.cancelled_at is None and self.cancel_when(self):
            self.cancelled_at = time.monotonic()
        return self.cancelled_at is not None

    def context(self, workdir: Path, timeout: float | None = None) -> JobContext:
        return JobContext(
            workdir=workdir,
            on_progress=lambda *args: self.progress.append(args),
            on_preview=lambda image, content_type: self.previews.append((image, content_type)),
            is_cancelled=self.is_cancelled,
            timeout=timeout,
            deadline=time.monotonic() + timeout if timeout else None,
        )
