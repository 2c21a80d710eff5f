"""The ComfyUI backend against the fake server replaying the recorded traces."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_worker.backends import BackendUnavailable, JobCancelled, JobError, JobSpec, Output, get_backend
from gpu_worker.backends.comfyui import ComfyUIBackend, with_unique_prefixes

from .conftest import Sinks
from .fake_comfyui import FakeComfyUI, invalid_case, run

SLOW = "27_canonical_workflows_check#9"  # EmptyImage -> ImageBlur x2 -> SaveImage, about 7 s


def backend(comfy: FakeComfyUI, **options: Any) -> ComfyUIBackend:
    return ComfyUIBackend(url=comfy.url, client_id="workshop-w1", **{"dead_after": 0.5, **options})


def render(
    comfy: FakeComfyUI,
    tmp_path: Path,
    workflow: dict[str, Any],
    sinks: Sinks | None = None,
    attempt: int = 2,
    **options: Any,
) -> list[Output]:
    job = JobSpec(7, attempt, "demo", workflow, {})
    timeout = options.pop("timeout", None)
    return backend(comfy, **options).run(job, (sinks or Sinks()).context(tmp_path, timeout))


def failure(comfy: FakeComfyUI, tmp_path: Path, workflow: dict[str, Any], **options: Any) -> JobError:
    with pytest.raises(JobError) as caught:
        render(comfy, tmp_path, workflow, **options)
    return caught.value


def test_it_is_built_by_name() -> None:
    assert get_backend("comfyui", url="http://127.0.0.1:1", client_id="w").name == "comfyui"


def test_it_fetches_an_image_with_our_prompt_and_client_ids(comfy: FakeComfyUI, tmp_path: Path) -> None:
    recorded = comfy.plan("01_success_image").run
    [output] = render(comfy, tmp_path, recorded.workflow)
    [posted] = comfy.calls("POST", "/prompt")
    assert (posted["prompt_id"], posted["client_id"]) == ("workshop-g7-a2", "workshop-w1")
    assert (output.filename, output.content_type) == ("demo-g7-a2.png", "image/png")
    assert output.path.read_bytes() == next(iter(recorded.files.values())).read_bytes()


@pytest.mark.parametrize(
    ("trace", "content_types"),
    [
        ("03_animated_webp", ["image/webp"]),
        ("04_animated_png", ["image/png"]),
        ("05_video_mp4", ["video/mp4"]),
        ("06_webm_vp9_and_av1", ["video/webm", "video/webm"]),
        ("09_preview_image_temp", ["image/png", "image/png"]),
    ],
)
def test_it_fetches_every_output_with_its_content_type(
    comfy: FakeComfyUI, tmp_path: Path, trace: str, content_types: list[str]
) -> None:
    recorded = comfy.plan(trace).run
    outputs = render(comfy, tmp_path, recorded.workflow)
    assert [o.content_type for o in outputs] == content_types
    assert sorted(o.path.stat().st_size for o in outputs) == sorted(
        p.stat().st_size for p in recorded.files.values()
    )
    assert len({o.filename for o in outputs}) == len(outputs)


def test_it_names_several_outputs_by_node(comfy: FakeComfyUI, tmp_path: Path) -> None:
    outputs = render(comfy, tmp_path, comfy.plan("06_webm_vp9_and_av1").run.workflow)
    assert [o.filename for o in outputs] == ["demo-g7-a2-n3-1.webm", "demo-g7-a2-n4-1.webm"]


def test_it_gives_every_save_node_its_own_prefix() -> None:
    workflow = run("06_webm_vp9_and_av1").workflow
    rewritten = with_unique_prefixes(workflow, JobSpec(7, 2, "demo", workflow, {}), "t0k")
    prefixes = [node["inputs"].get("filename_prefix") for node in rewritten.values()]
    assert prefixes == [None, None, "workshop/g7-a2-t0k/n3", "workshop/g7-a2-t0k/n4"]
    assert workflow["3"]["inputs"]["filename_prefix"] == "trace/s06vp9_095110"


def test_it_reports_node_and_step_progress_forward_only(comfy: FakeComfyUI, tmp_path: Path) -> None:
    sinks = Sinks()
    render(comfy, tmp_path, comfy.plan("24_testpack_sleep_progress_and_interrupt#1").run.workflow, sinks)
    percents = [p[0] for p in sinks.progress]
    messages = [p[3] for p in sinks.progress]
    assert percents == sorted(percents) and percents[-1] == 95.0
    assert any(re.fullmatch(r"Node 2 of 3 \(TestSleep\): [1-9]\d%", m) for m in messages)
    assert messages[-1] == "Fetched output 1 of 1"


def test_it_reports_steps_of_a_progress_bar(comfy: FakeComfyUI, tmp_path: Path) -> None:
    sinks = Sinks()
    with pytest.raises(JobError):  # SaveImageWebsocket saves no file
        render(comfy, tmp_path, comfy.plan("07_progress_binary_legacy").run.workflow, sinks)
    steps = [(step, steps) for _, step, steps, _ in sinks.progress if step is not None]
    assert steps == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert "Node 3 of 3 (SaveImageWebsocket): step 3 of 4" in [p[3] for p in sinks.progress]


def test_it_writes_a_new_file_when_a_rerun_is_partly_cached(comfy: FakeComfyUI, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sinks = Sinks()
    render(comfy, tmp_path / "a", comfy.plan("02_cached_resubmit#1").run.workflow)
    render(comfy, tmp_path / "b", comfy.plan("02_cached_resubmit#3").run.workflow, sinks, attempt=3)
    first, again = comfy.calls("GET", "/view")
    assert first["subfolder"] != again["subfolder"]
    assert "Node 1 of 1 (SaveImage)" in [p[3] for p in sinks.progress]


def test_it_collects_a_fully_cached_rerun(comfy: FakeComfyUI, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = render(comfy, tmp_path / "a", comfy.plan("02_cached_resubmit#1").run.workflow)
    again = render(comfy, tmp_path / "b", comfy.plan("02_cached_resubmit#2").run.workflow, attempt=3)
    views = comfy.calls("GET", "/view")
    assert len(comfy.calls("POST", "/prompt")) == 2
    assert views[0] == views[1]  # the cached prompt lists the file the first one wrote
    assert again[0].path.read_bytes() == first[0].path.read_bytes()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("value_below_min", "EmptyImage (node 1): width: Value 0 smaller than min of 1"),
        ("missing_required_input", "EmptyImage (node 1): width: Required input is missing"),
        ("combo_value_not_in_list", "LoadImage (node 1): image - Invalid image file: does_not_exist.png"),
        (
            "link_type_mismatch_INT_to_IMAGE",
            "SaveImage (node 2): images: Return type mismatch between linked",
        ),
        ("unknown_node_class", "Cannot execute because node NoSuchNode does not exist. (Node ID '#3')"),
    ],
)
def test_it_names_node_and_input_of_a_refused_workflow(
    comfy: FakeComfyUI, tmp_path: Path, case: str, message: str
) -> None:
    recorded = comfy.plan(invalid_case(case)).run
    error = failure(comfy, tmp_path, recorded.workflow)
    assert error.message.startswith(f"ComfyUI refused the workflow: {message}")
    assert error.retriable is False and '"node_errors"' in error.detail


def test_it_stops_a_prompt_accepted_with_node_errors(comfy: FakeComfyUI, tmp_path: Path) -> None:
    recorded = comfy.plan(invalid_case("partially_valid_two_outputs_one_bad_is_ACCEPTED")).run
    error = failure(comfy, tmp_path, recorded.workflow)
    assert error.message.startswith("ComfyUI refused part of the workflow: SaveImage (node 3): ")
    assert error.retriable is False
    assert comfy.calls("POST", "/queue") == [{"delete": ["workshop-g7-a2"]}]
    assert comfy.calls("POST", "/interrupt") == [{"prompt_id": "workshop-g7-a2"}]


def test_it_reports_a_runtime_error_as_retriable(comfy: FakeComfyUI, tmp_path: Path) -> None:
    error = failure(comfy, tmp_path, comfy.plan("13_runtime_error#1").run.workflow)
    assert (
        error.message
        == "SaveAnimatedWEBP (node 2) failed: RuntimeError: ERROR adding frame. WebPEncodingError: 5."
    )
    assert error.retriable is True
    assert "Traceback" not in error.message and "execution.py" in error.detail
    assert comfy.calls("GET", "/view") == []  # the branch that did finish is not a take


def test_it_names_the_failing_save_node(comfy: FakeComfyUI, tmp_path: Path) -> None:
    error = failure(comfy, tmp_path, comfy.plan("13_runtime_error#2").run.workflow)
    assert error.message.startswith("SaveVideo (node 3) failed: av.error.ExternalError: ")


def test_it_interrupts_its_prompt_on_cancel(comfy: FakeComfyUI, tmp_path: Path) -> None:
    recorded = comfy.plan("24_testpack_sleep_progress_and_interrupt#2").run
    sinks = Sinks(cancel_when=lambda s: any("TestSleep" in p[3] for p in s.progress))
    with pytest.raises(JobCancelled):
        render(comfy, tmp_path, recorded.workflow, sinks)
    assert sinks.cancelled_at is not None and time.monotonic() - sinks.cancelled_at < 2.0
    assert comfy.calls("POST", "/interrupt") == [{"prompt_id": "workshop-g7-a2"}]
    assert comfy.history["workshop-g7-a2"]["status"]["messages"][-1][0] == "execution_interrupted"


def test_it_interrupts_again_when_comfyui_lost_the_first_interrupt(
    comfy: FakeComfyUI, tmp_path: Path
) -> None:
    recorded = comfy.plan("24_testpack_sleep_progress_and_interrupt#2").run
    comfy.lose_interrupts = 1
    sinks = Sinks(cancel_when=lambda s: any("TestSleep" in p[3] for p in s.progress))
    with pytest.raises(JobCancelled):
        render(comfy, tmp_path, recorded.workflow, sinks)
    assert sinks.cancelled_at is not None and time.monotonic() - sinks.cancelled_at < 2.0
    assert len(comfy.calls("POST", "/interrupt")) >= 2
    assert comfy.history["workshop-g7-a2"]["status"]["messages"][-1][0] == "execution_interrupted"


def test_it_interrupts_at_the_next_node_boundary(comfy: FakeComfyUI, tmp_path: Path) -> None:
    recorded = comfy.plan("14_interrupt_targeted", scale=0.1).run
    sinks = Sinks(cancel_when=lambda s: any("(ImageBlur)" in p[3] for p in s.progress))
    with pytest.raises(JobCancelled):
        render(comfy, tmp_path, recorded.workflow, sinks)
    interrupted = comfy.history["workshop-g7-a2"]["status"]["messages"][-1]
    assert interrupted[0] == "execution_interrupted" and interrupted[1]["node_id"] == "4"


def test_it_takes_a_prompt_that_has_not_started_off_the_queue(comfy: FakeComfyUI, tmp_path: Path) -> None:
    slow = comfy.plan("14_interrupt_targeted", scale=0.5).run
    comfy.plan("01_success_image")
    httpx.post(f"{comfy.url}/prompt", json={"prompt": slow.workflow, "client_id": "someone-else"})
    sinks = Sinks(cancel_when=lambda s: any(p[3] == "Queued in ComfyUI" for p in s.progress))
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        render(comfy, tmp_path, run("01_success_image").workflow, sinks)
    assert time.monotonic() - started < 2.0
    assert {"delete": ["workshop-g7-a2"]} in comfy.calls("POST", "/queue")
    assert "workshop-g7-a2" not in comfy.history


def test_it_stops_a_prompt_past_its_deadline(comfy: FakeComfyUI, tmp_path: Path) -> None:
    recorded = comfy.plan("24_testpack_sleep_progress_and_interrupt#2").run
    error = failure(comfy, tmp_path, recorded.workflow, timeout=0.5)
    assert (
        error.message
        == "The generation took longer than its time limit (0.5 s) and was stopped; you can retry."
    )
    assert error.retriable is True
    assert comfy.calls("POST", "/interrupt") == [{"prompt_id": "workshop-g7-a2"}]


@pytest.mark.parametrize(("kind", "node"), [("executing", "4"), ("execution_success", None)])
def test_it_reconnects_and_reconciles_after_the_socket_drops(
    comfy: FakeComfyUI, tmp_path: Path, kind: str, node: str | None
) -> None:
    recorded = run(SLOW)
    comfy.plan(recorded, scale=0.05, drop_at=recorded.index(kind, node))
    outputs = render(comfy, tmp_path, recorded.workflow)
    assert [o.content_type for o in outputs] == ["image/png"] * 4
    assert comfy.calls("GET", "/ws") == [{"clientId": "workshop-w1"}] * 2


def test_it_fails_retriable_when_comfyui_dies_mid_run(comfy: FakeComfyUI, tmp_path: Path) -> None:
    recorded = run(SLOW)
    comfy.plan(recorded, scale=0.1, die_at=recorded.index("executing", "3"))
    error = failure(comfy, tmp_path, recorded.workflow)
    assert error.message.startswith("ComfyUI stopped answering in the middle of the generation")
    assert error.retriable is True
    with pytest.raises(BackendUnavailable):
        backend(comfy).check()


def test_it_fails_retriable_when_comfyui_is_not_there(closed_port: int, tmp_path: Path) -> None:
    down = ComfyUIBackend(url=f"http://127.0.0.1:{closed_port}", connect_wait=0.3)
    with pytest.raises(JobError) as caught:
        down.run(JobSpec(7, 2, "demo", {}, {}), Sinks().context(tmp_path))
    assert (caught.value.message, caught.value.retriable) == (
        "ComfyUI is not reachable on this GPU worker; you can retry.",
        True,
    )


@pytest.mark.parametrize("metadata", [True, False])
def test_it_forwards_preview_frames(comfy: FakeComfyUI, tmp_path: Path, metadata: bool) -> None:
    sinks = Sinks()
    with pytest.raises(JobError) as caught:
        render(
            comfy,
            tmp_path,
            comfy.plan("08_progress_binary_metadata").run.workflow,
            sinks,
            preview_metadata=metadata,
        )
    assert caught.value.message.startswith("The workflow saved no files")
    assert len(sinks.previews) == 4
    assert {ct for _, ct in sinks.previews} == {"image/png"} and sinks.previews[0][0].startswith(b"\x89PNG")


def test_it_follows_a_rerun_of_the_same_attempt_instead_of_resubmitting(
    comfy: FakeComfyUI, tmp_path: Path
) -> None:
    recorded = comfy.plan(SLOW, scale=0.05).run
    workflow = with_unique_prefixes(recorded.workflow, JobSpec(7, 2, "demo", recorded.workflow, {}), "old")
    body = {"prompt": workflow, "client_id": "workshop-w1", "prompt_id": "workshop-g7-a2"}
    httpx.post(f"{comfy.url}/prompt", json=body)
    outputs = render(comfy, tmp_path, recorded.workflow)
    assert len(comfy.calls("POST", "/prompt")) == 1
    assert len(outputs) == 4


def test_it_fails_when_the_prompt_vanishes_from_the_queue(comfy: FakeComfyUI, tmp_path: Path) -> None:
    slow = comfy.plan("14_interrupt_targeted", scale=0.5).run
    comfy.plan("01_success_image")
    httpx.post(f"{comfy.url}/prompt", json={"prompt": slow.workflow, "client_id": "someone-else"})

    def clear_soon() -> None:
        time.sleep(0.1)
        httpx.post(f"{comfy.url}/queue", json={"clear": True})

    threading.Thread(target=clear_soon).start()
    error = failure(comfy, tmp_path, run("01_success_image").workflow, quiet_after=0.3)
    assert error.message.startswith("ComfyUI lost the generation") and error.retriable is True
