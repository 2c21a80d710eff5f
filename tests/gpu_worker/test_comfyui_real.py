"""The ComfyUI backend against a real ComfyUI server (see tests/comfyui_real.py).

Every test goes through ``ComfyUIBackend.run`` or the RQ job. Tests that need the weight-free test
nodes (TestSleep, SaveImageWebsocket) skip when the server at ``real_comfyui`` lacks them.
"""

from __future__ import annotations

import base64
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import av
import httpx
import pytest
from redis import Redis

from gpu_worker import jobs, protocol, workflows
from gpu_worker.backends import JobCancelled, JobError, JobSpec, Output
from gpu_worker.backends.comfyui import ComfyUIBackend, prompt_id_for
from tests import comfyui_real

from .conftest import Sinks, wait_for

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer

Events = Callable[[], list[dict[str, Any]]]
Workflow = dict[str, Any]

# --- helpers ------------------------------------------------------------------------------------


def webm_codecs(url: str) -> list[str]:
    """The WebM codecs this server's SaveWEBM offers (vp9 and av1 on 0.3.75)."""
    info = httpx.get(f"{url}/object_info/SaveWEBM", timeout=10).json()["SaveWEBM"]
    codec = info["input"]["required"]["codec"]
    options = codec[1]["options"] if codec[0] == "COMBO" else codec[0]  # newer or older spelling of a combo
    return [name for name in ("vp9", "av1") if name in options]


def new_job(workflow: Workflow, template: str = "real") -> JobSpec:
    # A generation of its own: the prompt id (and so ComfyUI's history) is per generation and attempt.
    return JobSpec(random.randrange(10**6, 10**9), 1, template, workflow, {})


def backend(url: str, **options: Any) -> ComfyUIBackend:
    return ComfyUIBackend(url=url, client_id=f"workshop-test-{uuid4().hex[:8]}", **options)


def render(
    url: str, tmp_path: Path, workflow: Workflow, sinks: Sinks | None = None, **options: Any
) -> list[Output]:
    timeout = options.pop("timeout", 120)
    return backend(url, **options).run(new_job(workflow), (sinks or Sinks()).context(tmp_path, timeout))


def failure(url: str, tmp_path: Path, workflow: Workflow, **options: Any) -> JobError:
    with pytest.raises(JobError) as caught:
        render(url, tmp_path, workflow, **options)
    return caught.value


def queued(url: str) -> list[str]:
    """The prompt ids ComfyUI is running or has pending."""
    queue = httpx.get(f"{url}/queue", timeout=10).json()
    return [item[1] for item in queue["queue_running"] + queue["queue_pending"]]


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def empty(width: int = 8, height: int = 8, frames: int = 1) -> dict[str, Any]:
    color = random.randrange(2**24)  # never a cached result of another test
    return node("EmptyImage", width=width, height=height, batch_size=frames, color=color)


def still(size: int = 8) -> Workflow:
    """EmptyImage -> SaveImage."""
    return {"1": empty(size, size), "2": node("SaveImage", images=["1", 0], filename_prefix="real/still")}


def sleeping(seconds: float) -> Workflow:
    """EmptyImage -> TestSleep (a progress tick every 10 ms; stops at an interrupt) -> SaveImage."""
    return {
        "1": empty(),
        "2": node("TestSleep", value=["1", 0], seconds=seconds),
        "3": node("SaveImage", images=["2", 0], filename_prefix="real/slept"),
    }


def animated_webp(source: str) -> dict[str, Any]:
    options = {"fps": 6.0, "lossless": False, "quality": 80, "method": "default"}
    return node("SaveAnimatedWEBP", images=[source, 0], filename_prefix="real/anim", **options)


def streaming(frames: int, size: int, pause: float = 0.0) -> Workflow:
    """Noise frames sent as binary WebSocket previews (SaveImageWebsocket), then saved as a WebP.

    With a ``pause`` the frames come in three bursts, a TestSleep apart."""
    workflow = {
        "1": empty(size, size, frames),
        "2": node("ImageAddNoise", image=["1", 0], seed=1, strength=0.5),
    }
    source = "2"
    for burst in range(3 if pause else 1):
        if pause:
            workflow[f"{burst}0"] = node("TestSleep", value=[source, 0], seconds=pause)
            source = f"{burst}0"
        workflow[f"{burst}1"] = node("SaveImageWebsocket", images=[source, 0])
    return {**workflow, "9": animated_webp(source)}


def every_kind_of_output(codecs: list[str]) -> Workflow:
    """A still (SaveImage), an animated WebP, an H.264 MP4 and a WebM per codec, in one prompt."""
    webm = {"fps": 8.0, "crf": 32.0, "filename_prefix": "real/webm"}
    return {
        "1": empty(64, 48, frames=6),
        "2": node("ImageAddNoise", image=["1", 0], seed=5, strength=0.4),
        "3": node("SaveImage", images=["9", 0], filename_prefix="real/still"),
        "4": animated_webp("2"),
        "5": node("CreateVideo", images=["2", 0], fps=8.0),
        "6": node("SaveVideo", video=["5", 0], filename_prefix="real/mp4", format="mp4", codec="h264"),
        **{f"7{i}": node("SaveWEBM", images=["2", 0], codec=codec, **webm) for i, codec in enumerate(codecs)},
        "9": empty(32, 32),
    }


def video_codec(path: Path) -> str:
    with av.open(str(path)) as container:
        return str(container.streams.video[0].codec_context.codec.canonical_name)


def history(url: str, job: JobSpec) -> dict[str, Any]:
    entry: dict[str, Any] = httpx.get(f"{url}/history/{prompt_id_for(job)}", timeout=10).json()
    return entry[prompt_id_for(job)]


def all_history(url: str) -> dict[str, Any]:
    entries: dict[str, Any] = httpx.get(f"{url}/history", params={"max_items": 200}, timeout=10).json()
    return entries


def messages(sinks: Sinks) -> list[str]:
    return [p[3] for p in sinks.progress]


def in_node(sinks: Sinks, class_type: str) -> bool:
    return any(f"({class_type})" in message for message in messages(sinks))


def when(condition: Callable[[], Any], action: Callable[[], object]) -> None:
    """Run ``action`` in a thread as soon as ``condition()`` holds."""
    threading.Thread(target=lambda: (wait_for(condition, 60), action()), daemon=True).start()


class Proxy:
    """A loopback TCP proxy in front of ComfyUI: ``cut()`` closes every connection through it, and
    while ``refusing`` it hangs up on new ones (as a restarting ComfyUI or a flaky network would)."""

    def __init__(self, target: str) -> None:
        self.target = ("127.0.0.1", int(target.rsplit(":", 1)[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.accepted = self.cut_count = 0
        self.refusing = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, refuse_for: float = 0.0) -> None:
        self.refusing = refuse_for > 0
        with self.lock:
            sockets, self.sockets = self.sockets, []
            self.cut_count += len(sockets) // 2
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if refuse_for:
            threading.Timer(refuse_for, lambda: setattr(self, "refusing", False)).start()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(real_comfyui: str) -> Iterator[Proxy]:
    through = Proxy(real_comfyui)
    yield through
    through.close()


@pytest.fixture
def worker(real_comfyui: str, redis: Redis, redis_url: str, stream: str) -> Iterator[ComfyUIBackend]:
    """The RQ job's configuration, with the real ComfyUI as its backend."""
    comfy = backend(real_comfyui)
    jobs.configure(jobs.WorkerConfig(redis_url, comfy, "gpu-real-1", stream, upload_options={"backoff": 0}))
    yield comfy
    jobs.configure(None)


def generate(server: UploadServer, job: JobSpec, **overrides: Any) -> dict[str, Any]:
    fields = {"generation_id": job.generation_id, "attempt": job.attempt, "template": job.template}
    return jobs.run_generation(
        **{**fields, "workflow": job.workflow, "params": {}, "upload_url": server.url(), **overrides}
    )


# --- outputs ------------------------------------------------------------------------------------


def test_it_renders_the_model_free_template_on_a_real_comfyui(tmp_path: Path, real_comfyui: str) -> None:
    workflow = workflows.model_free_video(seed=3, frames=9, width=64, height=48, fps=8)
    job = new_job(workflow, "model-free")
    sinks = Sinks()
    [output] = backend(real_comfyui).run(job, sinks.context(tmp_path, timeout=300))
    assert output.content_type == "video/mp4" and output.filename == f"model-free-g{job.generation_id}-a1.mp4"
    with av.open(str(output.path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 48)
        assert sum(1 for _ in container.decode(stream)) == 9
    # 4 nodes, or 3 when an earlier test left EmptyImage of this size in ComfyUI's cache.
    assert [m for m in messages(sinks) if m.startswith("Node ")][-1] in (
        "Node 4 of 4 (SaveVideo)",
        "Node 3 of 3 (SaveVideo)",
    )


def test_it_fetches_every_output_of_one_prompt(tmp_path: Path, real_comfyui: str) -> None:
    codecs = webm_codecs(real_comfyui)
    outputs = render(real_comfyui, tmp_path, every_kind_of_output(codecs))
    assert [(o.filename.split("-a1-")[1], o.content_type) for o in outputs] == [
        ("n3-1.png", "image/png"),
        ("n4-1.webp", "image/webp"),
        ("n6-1.mp4", "video/mp4"),
        *[(f"n7{i}-1.webm", "video/webm") for i in range(len(codecs))],
    ]
    assert outputs[0].path.read_bytes()[:4] == b"\x89PNG" and outputs[1].path.read_bytes()[8:12] == b"WEBP"
    assert [video_codec(o.path) for o in outputs[2:]] == ["h264", *codecs]


def test_it_writes_a_new_file_for_a_cached_rerun(tmp_path: Path, real_comfyui: str) -> None:
    workflow = still(16)
    jobs_ = [new_job(workflow), new_job(workflow)]
    for name in "ab":
        (tmp_path / name).mkdir()
    sinks = Sinks()
    [first] = backend(real_comfyui).run(jobs_[0], Sinks().context(tmp_path / "a"))
    [again] = backend(real_comfyui).run(jobs_[1], sinks.context(tmp_path / "b"))
    listed = [history(real_comfyui, job)["outputs"]["2"]["images"] for job in jobs_]
    assert listed[0] != listed[1] and first.path.read_bytes()[:4] == again.path.read_bytes()[:4] == b"\x89PNG"
    assert history(real_comfyui, jobs_[1])["status"]["messages"][1][1]["nodes"] == ["1"]  # EmptyImage's
    assert "Node 1 of 1 (SaveImage)" in messages(sinks)


def test_it_collects_a_finished_prompt_of_the_same_attempt_without_resubmitting(
    tmp_path: Path, real_comfyui: str
) -> None:
    job, comfy = new_job(still()), backend(real_comfyui)
    for name in "ab":
        (tmp_path / name).mkdir()
    [first] = comfy.run(job, Sinks().context(tmp_path / "a"))
    number = history(real_comfyui, job)["prompt"][0]
    [again] = comfy.run(job, Sinks().context(tmp_path / "b"))  # RQ ran the job twice
    assert history(real_comfyui, job)["prompt"][0] == number  # a resubmit would have a new number
    assert again.path.read_bytes() == first.path.read_bytes()


# --- failures -----------------------------------------------------------------------------------


def test_it_names_node_and_input_of_a_refused_workflow(tmp_path: Path, real_comfyui: str) -> None:
    workflow = {
        "1": node("EmptyImage", width=0, height=8, batch_size=1, color=0),
        "2": node("SaveImage", images=["1", 0], filename_prefix="real/refused"),
    }
    error = failure(real_comfyui, tmp_path, workflow)
    assert (
        error.message
        == "ComfyUI refused the workflow: EmptyImage (node 1): width: Value 0 smaller than min of 1"
    )
    assert error.retriable is False and '"value_smaller_than_min"' in error.detail


def test_it_stops_a_prompt_accepted_with_node_errors(tmp_path: Path, real_comfyui: str) -> None:
    workflow = {
        "1": empty(),
        "2": node("SaveImage", images=["1", 0], filename_prefix="real/half"),
        "3": node("SaveImage", images=["99", 0], filename_prefix="real/bad"),
    }
    error = failure(real_comfyui, tmp_path, workflow)
    assert error.message.startswith("ComfyUI refused part of the workflow: SaveImage (node 3): ")
    assert error.retriable is False and "'99'" in error.message
    assert queued(real_comfyui) == []


def test_it_reports_a_runtime_error_as_retriable(tmp_path: Path, real_comfyui: str) -> None:
    workflow = {
        "1": empty(63, 47, frames=4),
        "2": node("CreateVideo", images=["1", 0], fps=8.0),
        "3": node("SaveVideo", video=["2", 0], filename_prefix="real/odd", format="mp4", codec="h264"),
    }
    error = failure(real_comfyui, tmp_path, workflow)
    assert error.message.startswith("SaveVideo (node 3) failed: av.error.ExternalError: ")
    assert error.retriable is True and "Traceback" not in error.message and "execution.py" in error.detail


# --- cancel and timeout -------------------------------------------------------------------------


def test_it_cancels_a_running_prompt_within_two_seconds(tmp_path: Path, real_comfyui: str) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    sinks = Sinks(cancel_when=lambda s: any(re.search(r"TestSleep\): [1-9]%", m) for m in messages(s)))
    with pytest.raises(JobCancelled):
        render(real_comfyui, tmp_path, sleeping(30), sinks)
    assert sinks.cancelled_at is not None and time.monotonic() - sinks.cancelled_at < 2.0
    assert queued(real_comfyui) == []


def test_it_runs_the_next_job_straight_after_a_cancel(tmp_path: Path, real_comfyui: str) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    comfy = backend(real_comfyui)
    with pytest.raises(JobCancelled):
        comfy.run(
            new_job(sleeping(30)), Sinks(cancel_when=lambda s: in_node(s, "TestSleep")).context(tmp_path)
        )
    started = time.monotonic()
    [output] = comfy.run(new_job(sleeping(0.1)), Sinks().context(tmp_path))
    assert time.monotonic() - started < 5.0 and output.content_type == "image/png"


def test_it_takes_a_prompt_that_has_not_started_off_the_queue(tmp_path: Path, real_comfyui: str) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    ahead = {"prompt": sleeping(30), "client_id": "someone-else", "prompt_id": f"ahead-{uuid4().hex}"}
    httpx.post(f"{real_comfyui}/prompt", json=ahead, timeout=10)
    job, sinks = new_job(still()), Sinks(cancel_when=lambda s: "Queued in ComfyUI" in messages(s))
    try:
        with pytest.raises(JobCancelled):
            backend(real_comfyui).run(job, sinks.context(tmp_path))
        assert sinks.cancelled_at is not None and time.monotonic() - sinks.cancelled_at < 2.0
        assert queued(real_comfyui) == [ahead["prompt_id"]]  # ours went, without running
        assert prompt_id_for(job) not in all_history(real_comfyui)
    finally:
        httpx.post(f"{real_comfyui}/interrupt", json={"prompt_id": ahead["prompt_id"]}, timeout=10)
        wait_for(lambda: not queued(real_comfyui))


def test_it_interrupts_what_a_killed_run_of_this_worker_left_running(
    tmp_path: Path, real_comfyui: str
) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    comfy, orphan = backend(real_comfyui), new_job(sleeping(30))
    body = {"prompt": orphan.workflow, "client_id": comfy.client_id, "prompt_id": prompt_id_for(orphan)}
    httpx.post(f"{real_comfyui}/prompt", json=body, timeout=10)  # as a work-horse killed mid-run left it
    wait_for(lambda: prompt_id_for(orphan) in queued(real_comfyui))
    started = time.monotonic()
    [output] = comfy.run(replace(orphan, attempt=2, workflow=sleeping(0.1)), Sinks().context(tmp_path))
    assert time.monotonic() - started < 5.0 and output.content_type == "image/png"
    assert history(real_comfyui, orphan)["status"]["messages"][-1][0] == "execution_interrupted"


def test_it_stops_a_prompt_past_its_deadline(tmp_path: Path, real_comfyui: str) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    started = time.monotonic()
    error = failure(real_comfyui, tmp_path, sleeping(30), timeout=1.5)
    assert (
        error.message
        == "The generation took longer than its time limit (1.5 s) and was stopped; you can retry."
    )
    assert error.retriable is True and time.monotonic() - started < 1.5 + 2.0
    assert queued(real_comfyui) == []


def test_it_cancels_through_the_rq_job_and_uploads_nothing(
    worker: ComfyUIBackend, upload_server: UploadServer, read_events: Events, redis: Redis
) -> None:
    comfyui_real.require_nodes(worker.url, "TestSleep")
    job, cancelled_at = new_job(sleeping(30)), []
    cancel = protocol.cancel_key(job.generation_id, job.attempt)
    when(
        lambda: any("(TestSleep)" in e.get("message", "") for e in read_events()),
        lambda: (redis.set(cancel, "1", ex=60), cancelled_at.append(time.time())),
    )
    assert generate(upload_server, job) == {"status": "cancelled"}
    assert read_events()[-1]["ts"] - cancelled_at[0] < 2.0
    assert upload_server.uploads == [] and queued(worker.url) == []


def test_it_fails_the_rq_job_past_the_template_timeout(
    worker: ComfyUIBackend, upload_server: UploadServer, read_events: Events
) -> None:
    comfyui_real.require_nodes(worker.url, "TestSleep")
    assert generate(upload_server, new_job(sleeping(30)), timeout=1)["status"] == "failed"
    failed = read_events()[-1]
    assert (failed["type"], failed["retriable"]) == (protocol.FAILED, True)
    assert (
        failed["message"]
        == "The generation took longer than its time limit (1 s) and was stopped; you can retry."
    )
    assert "interrupted at its deadline" in failed["detail"] and queued(worker.url) == []


# --- progress and previews ----------------------------------------------------------------------


def test_it_reports_node_and_percent_progress_forward_only(tmp_path: Path, real_comfyui: str) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    sinks = Sinks()
    render(real_comfyui, tmp_path, sleeping(1.0), sinks)
    nodes = [m for m in dict.fromkeys(re.sub(r":.*", "", m) for m in messages(sinks)) if m.startswith("Node")]
    assert nodes == ["Node 1 of 3 (EmptyImage)", "Node 2 of 3 (TestSleep)", "Node 3 of 3 (SaveImage)"]
    slept = [int(m[-3:-1]) for m in messages(sinks) if re.fullmatch(r".*TestSleep\): \d\d%", m)]
    assert len(slept) > 5 and slept == sorted(slept)
    percents = [p[0] for p in sinks.progress]
    assert percents == sorted(percents) and percents[-1] == 95.0
    assert all(p[1] is None for p in sinks.progress[:-1])  # seconds slept are not steps


@pytest.mark.parametrize("metadata", [True, False])
def test_it_forwards_websocket_image_frames_as_previews(
    tmp_path: Path, real_comfyui: str, metadata: bool
) -> None:
    comfyui_real.require_nodes(real_comfyui, "SaveImageWebsocket")
    sinks = Sinks()
    [output] = render(real_comfyui, tmp_path, streaming(4, 32), sinks, preview_metadata=metadata)
    assert len(sinks.previews) == 4 and output.content_type == "image/webp"
    assert all(
        image[:4] == b"\x89PNG" and content_type == "image/png" for image, content_type in sinks.previews
    )
    steps = [(p[1], p[2]) for p in sinks.progress if "(SaveImageWebsocket): step" in p[3]]
    assert steps == [(0, 4), (1, 4), (2, 4), (3, 4)]


def test_it_sends_few_small_previews_through_the_rq_job(
    worker: ComfyUIBackend, upload_server: UploadServer, read_events: Events
) -> None:
    comfyui_real.require_nodes(worker.url, "SaveImageWebsocket", "TestSleep")
    started = time.monotonic()
    assert generate(upload_server, new_job(streaming(4, 256, pause=1.0)))["status"] == "succeeded"
    took = time.monotonic() - started
    previews = [e for e in read_events() if e["type"] == protocol.PREVIEW]
    assert 2 <= len(previews) <= took * 2 + 1  # 12 frames, 3 bursts; at most 2 a second
    images = [base64.b64decode(p["image"]) for p in previews]
    assert all(len(i) <= protocol.PREVIEW_MAX_BYTES and i[:2] == b"\xff\xd8" for i in images)
    assert all(max(p["width"], p["height"]) <= protocol.PREVIEW_MAX_SIDE for p in previews)


# --- the connection and the server going away ---------------------------------------------------


@pytest.mark.parametrize(("away", "followed_to_the_end"), [(0.0, True), (3.0, False)])
def test_it_reconciles_after_the_connections_drop_mid_run(
    tmp_path: Path, real_comfyui: str, proxy: Proxy, away: float, followed_to_the_end: bool
) -> None:
    """Back at once: /queue says it runs, the new socket follows it. Back after the end: /history has it."""
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    sinks = Sinks()
    when(lambda: in_node(sinks, "TestSleep"), lambda: proxy.cut(refuse_for=away))
    [output] = render(proxy.url, tmp_path, sleeping(1.5), sinks)
    assert proxy.cut_count >= 1 and proxy.accepted >= 3  # HTTP and WebSocket, then a new socket
    assert ("Node 3 of 3 (SaveImage)" in messages(sinks)) is followed_to_the_end
    assert output.path.read_bytes()[:4] == b"\x89PNG" and messages(sinks)[-1] == "Fetched output 1 of 1"


def test_it_fails_retriable_when_comfyui_dies_mid_run(tmp_path: Path) -> None:
    if not comfyui_real.installed():  # it loads TestSleep
        pytest.skip("no ComfyUI in .comfyui/ to start a second server from")
    doomed, sinks, killed_at = comfyui_real.RealComfyUI(tmp_path / "server").start(), Sinks(), []
    try:
        when(lambda: in_node(sinks, "TestSleep"), lambda: (doomed.kill(), killed_at.append(time.monotonic())))
        error = failure(doomed.url, tmp_path, sleeping(30), sinks=sinks, dead_after=1.0)
    finally:
        doomed.stop()
    assert error.message.startswith("ComfyUI stopped answering in the middle of the generation")
    assert error.retriable is True and time.monotonic() - killed_at[0] < 1.0 + 3.0
