"""The RQ job on the ComfyUI backend: events, uploads, cancel, timeout and previews end to end."""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from redis import Redis

from gpu_worker import jobs, protocol
from gpu_worker.backends.comfyui import ComfyUIBackend

from .fake_comfyui import FakeComfyUI, run

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer

Events = Callable[[], list[dict[str, Any]]]
CANCEL = protocol.cancel_key(7, 2)
SLOW = "27_canonical_workflows_check#9"  # EmptyImage -> ImageBlur x2 -> SaveImage, about 7 s


@pytest.fixture
def worker(comfy: FakeComfyUI, redis: Redis, redis_url: str, stream: str) -> Iterator[FakeComfyUI]:
    backend = ComfyUIBackend(url=comfy.url, client_id="workshop-gpu-test-1")
    jobs.configure(jobs.WorkerConfig(redis_url, backend, "gpu-test-1", stream, upload_options={"backoff": 0}))
    redis.delete(CANCEL)
    yield comfy
    jobs.configure(None)
    redis.delete(CANCEL)


def generate(server: UploadServer, workflow: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    kwargs = {"generation_id": 7, "attempt": 2, "template": "clip", "workflow": workflow, "params": {}}
    return jobs.run_generation(**{**kwargs, "upload_url": server.url(), **overrides})


def test_it_uploads_every_output_and_names_them(
    worker: FakeComfyUI, upload_server: UploadServer, read_events: Events
) -> None:
    result = generate(upload_server, worker.plan("06_webm_vp9_and_av1").run.workflow)
    names = ["clip-g7-a2-n3-1.webm", "clip-g7-a2-n4-1.webm"]
    assert result == {"status": "succeeded", "outputs": names}
    assert [u.path.rsplit("/", 1)[-1] for u in upload_server.uploads] == names
    assert {u.headers["content-type"] for u in upload_server.uploads} == {"video/webm"}
    assert read_events()[-1]["outputs"] == names


def test_it_reports_nodes_as_progress(
    worker: FakeComfyUI, upload_server: UploadServer, read_events: Events
) -> None:
    generate(upload_server, worker.plan(SLOW, scale=0.1).run.workflow)
    progress = [e for e in read_events() if e["type"] == protocol.PROGRESS]
    assert "Node 3 of 4 (ImageBlur)" in [e["message"] for e in progress]
    assert [e["percent"] for e in progress] == sorted(e["percent"] for e in progress)


def test_it_cancels_a_running_prompt_and_uploads_nothing(
    worker: FakeComfyUI, upload_server: UploadServer, read_events: Events, redis: Redis
) -> None:
    workflow = worker.plan(SLOW, scale=0.1).run.workflow
    threading.Timer(0.4, lambda: redis.set(CANCEL, "1")).start()
    assert generate(upload_server, workflow) == {"status": "cancelled"}
    events = read_events()
    assert [events[0]["type"], events[-1]["type"]] == [protocol.STARTED, protocol.CANCELLED]
    assert events[-1]["ts"] - events[0]["ts"] < 0.4 + 2.0
    assert upload_server.uploads == []
    assert worker.calls("POST", "/interrupt") == [{"prompt_id": "workshop-g7-a2"}]


def test_it_does_not_start_an_attempt_already_cancelled(
    worker: FakeComfyUI, upload_server: UploadServer, read_events: Events, redis: Redis
) -> None:
    redis.set(CANCEL, "1")
    assert generate(upload_server, run("01_success_image").workflow) == {"status": "cancelled"}
    assert [e["type"] for e in read_events()] == [protocol.CANCELLED]
    assert worker.calls("POST", "/prompt") == []


def test_it_fails_a_prompt_past_the_template_timeout(
    worker: FakeComfyUI, upload_server: UploadServer, read_events: Events
) -> None:
    workflow = worker.plan(SLOW, scale=0.3).run.workflow
    assert generate(upload_server, workflow, timeout=1)["status"] == "failed"
    failed = read_events()[-1]
    assert (failed["type"], failed["retriable"]) == (protocol.FAILED, True)
    assert (
        failed["message"]
        == "The generation took longer than its time limit (1 s) and was stopped; you can retry."
    )


def test_it_sends_few_small_previews_while_heavy_previews_stall_comfyui(
    worker: FakeComfyUI, upload_server: UploadServer, read_events: Events
) -> None:
    # The first 30 of the 100 recorded 512x512 noise previews (0.8 MB each), then the end.
    lagging = run("23_ws_backlog_lag")
    lagging = dataclasses.replace(lagging, items=lagging.items[:100] + lagging.items[-2:])
    workflow = worker.plan(lagging, scale=0.1, preview_cost=0.01).run.workflow
    started = time.monotonic()
    result = generate(upload_server, workflow)
    took = time.monotonic() - started
    previews = [e for e in read_events() if e["type"] == protocol.PREVIEW]
    assert result["message"].startswith("The workflow saved no files")  # SaveImageWebsocket
    assert 1 <= len(previews) <= took * 2 + 1
    images = [base64.b64decode(p["image"]) for p in previews]
    assert all(len(i) <= protocol.PREVIEW_MAX_BYTES and i.startswith(b"\xff\xd8") for i in images)
    assert {(p["width"], p["height"]) for p in previews} <= {(320, 320), (160, 160)}
