from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gpu_worker import jobs, protocol
from gpu_worker.backends import JobContext, JobError, JobSpec, Output

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer

Events = Callable[[], list[dict[str, Any]]]


class FakeBackend:
    """Writes two small files, or fails the way it is told to."""

    name = "fake"

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.workdir: Path | None = None

    def check(self) -> None:
        pass

    def run(self, job: JobSpec, ctx: JobContext) -> list[Output]:
        self.workdir = ctx.workdir
        ctx.progress(50.0, step=1, steps=2, message="Half way")
        if self.error:
            raise self.error
        outputs = []
        for name in ("a", "b"):
            path = ctx.workdir / f"{name}.txt"
            path.write_text(f"{name} for {job.params['prompt']}")
            outputs.append(Output(path, f"out-g{job.generation_id}-{name}.txt", "text/plain"))
        return outputs


@pytest.fixture
def unconfigured() -> Iterator[None]:
    jobs.configure(None)
    yield
    jobs.configure(None)


@pytest.fixture
def backend(unconfigured: None, redis_url: str, stream: str) -> FakeBackend:
    fake = FakeBackend()
    jobs.configure(jobs.WorkerConfig(redis_url, fake, "gpu-test-1", stream, upload_options={"backoff": 0}))
    return fake


def run(server: UploadServer, **overrides: Any) -> dict[str, Any]:
    kwargs = {
        "generation_id": 7,
        "attempt": 2,
        "template": "demo",
        "workflow": {"1": {"class_type": "KSampler"}},
        "params": {"prompt": "a fox"},
        "upload_url": server.url(),
    }
    return jobs.run_generation(**{**kwargs, **overrides})


def test_it_reports_started_progress_and_succeeded_in_order(
    backend: FakeBackend, upload_server: UploadServer, read_events: Events
) -> None:
    run(upload_server)
    events = read_events()
    assert events[0]["type"] == protocol.STARTED
    assert (events[1]["type"], events[1]["percent"], events[1]["message"]) == (
        protocol.PROGRESS,
        50.0,
        "Half way",
    )
    assert {e["type"] for e in events[1:-1]} == {protocol.PROGRESS}
    assert events[-1]["type"] == protocol.SUCCEEDED
    assert events[-1]["outputs"] == ["out-g7-a.txt", "out-g7-b.txt"]
    assert {(e["generation_id"], e["attempt"], e["worker"]) for e in events} == {(7, 2, "gpu-test-1")}


def test_it_uploads_every_output_in_order(backend: FakeBackend, upload_server: UploadServer) -> None:
    run(upload_server)
    uploads = upload_server.uploads
    assert [u.path for u in uploads] == [
        "/uploads/signed-token/out-g7-a.txt",
        "/uploads/signed-token/out-g7-b.txt",
    ]
    assert [u.body for u in uploads] == [b"a for a fox", b"b for a fox"]
    assert uploads[0].headers["content-type"] == "text/plain"


def test_it_returns_the_outputs(backend: FakeBackend, upload_server: UploadServer) -> None:
    assert run(upload_server) == {"status": "succeeded", "outputs": ["out-g7-a.txt", "out-g7-b.txt"]}


def test_it_reports_a_job_error_as_failed_and_returns(
    backend: FakeBackend, upload_server: UploadServer, read_events: Events
) -> None:
    backend.error = JobError("The prompt was refused.", detail="node 6: blocked word", retriable=False)
    assert run(upload_server)["status"] == "failed"
    failed = read_events()[-1]
    assert failed["type"] == protocol.FAILED
    assert (failed["message"], failed["detail"], failed["retriable"]) == (
        "The prompt was refused.",
        "node 6: blocked word",
        False,
    )
    assert upload_server.uploads == []


def test_it_reports_an_unexpected_error_and_reraises(
    backend: FakeBackend, upload_server: UploadServer, read_events: Events
) -> None:
    backend.error = RuntimeError("boom in node 12")
    with pytest.raises(RuntimeError, match="boom in node 12"):
        run(upload_server)
    failed = read_events()[-1]
    assert (failed["type"], failed["message"], failed["retriable"]) == (
        protocol.FAILED,
        jobs.INTERNAL_ERROR,
        True,
    )
    assert "Traceback" in failed["detail"] and "boom in node 12" in failed["detail"]


def test_it_reports_a_refused_upload_as_final(
    backend: FakeBackend, upload_server: UploadServer, read_events: Events
) -> None:
    upload_server.statuses[:] = [403]
    assert run(upload_server)["status"] == "failed"
    failed = read_events()[-1]
    assert (failed["message"], failed["retriable"]) == ("Could not deliver the result (HTTP 403).", False)
    assert not any(e["type"] == protocol.SUCCEEDED for e in read_events())


@pytest.mark.parametrize("error", [None, JobError("No."), RuntimeError("boom")])
def test_it_removes_the_workdir(
    backend: FakeBackend, upload_server: UploadServer, error: Exception | None
) -> None:
    backend.error = error
    try:
        run(upload_server)
    except RuntimeError:
        pass
    assert backend.workdir is not None and not backend.workdir.exists()


def test_it_falls_back_to_the_environment(unconfigured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://redis.example:6379/3")
    monkeypatch.setenv("GPU_WORKER_NAME", "gpu-env-1")
    monkeypatch.setenv("EVENTS_STREAM", "events-from-env")
    monkeypatch.setenv("SYNTHETIC_FRAME_DELAY", "0.2")
    config = jobs.current_config()
    assert (config.redis_url, config.worker_name, config.events_stream) == (
        "redis://redis.example:6379/3",
        "gpu-env-1",
        "events-from-env",
    )
    assert (config.backend.name, config.backend.frame_delay) == ("synthetic", 0.2)  # type: ignore[attr-defined]
