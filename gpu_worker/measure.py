"""Measuring the ComfyUI backend on a real ComfyUI, for `gpu-worker accept` and `bench/comfyui.py`.

- ``time_runs``: small model-free jobs (EmptyImage -> ImageAddNoise -> CreateVideo -> SaveVideo,
  64x48, 9 frames, each with its own seed so ComfyUI caches nothing): the wall time of
  ``ComfyUIBackend.run`` (submit, follow, fetch the mp4) against ComfyUI's execution time from its
  own timestamps (execution_start -> execution_success). The difference is what the worker adds.
- ``time_cancels``: jobs held in ComfyUI's ``TestSleep`` node (its test suite's node pack), cancelled
  0.5 s into it: the time from the cancel until ``run`` gives the worker back, and whether ComfyUI's
  queue is then empty (nothing left running on the GPU).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker import workflows
from gpu_worker.backends import JobCancelled, JobContext, JobSpec
from gpu_worker.backends.comfyui import ComfyUIBackend, prompt_id_for
from gpu_worker.comfy import ComfyClient

SLEEP_NODE = "TestSleep"
# Small enough that ComfyUI's own part is short and the worker's share shows; the mp4 is still real.
SMALL = {"frames": 9, "width": 64, "height": 48, "fps": 8}
RUN_TIMEOUT_S = 300.0
CANCEL_AFTER_S = 0.5
SLEEP_S = 30.0


def with_sleep(model_free: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The model-free workflow with ComfyUI's TestSleep between the noise and the video: a run that
    lasts ``seconds``, reports progress and stops at an interrupt."""
    workflow = copy.deepcopy(model_free)
    workflow["5"] = {"class_type": SLEEP_NODE, "inputs": {"value": ["2", 0], "seconds": seconds}}
    workflow["3"]["inputs"]["images"] = ["5", 0]
    return workflow


def small_job(generation_id: int, *, sleep: float = 0.0) -> JobSpec:
    """A model-free job of its own seed (nothing cached); optionally held ``sleep`` s in a TestSleep."""
    workflow = workflows.model_free_video(seed=generation_id, **SMALL)
    return JobSpec(generation_id, 1, "model-free", with_sleep(workflow, sleep) if sleep else workflow, {})


def percentile(values: list[float], q: float) -> float:
    """The value at quantile ``q`` (nearest rank): with 20 values, p95 is the 19th smallest."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def comfy_seconds(client: ComfyClient, prompt_id: str) -> float:
    """ComfyUI's own execution time of a finished prompt, from the timestamps in its history."""
    history = client.history(prompt_id)
    if history is None:
        raise ValueError(f"ComfyUI has no history for {prompt_id}")
    messages = dict((name, data) for name, data in history["status"]["messages"])
    return float(messages["execution_success"]["timestamp"] - messages["execution_start"]["timestamp"]) / 1000


def _context(workdir: Path, **options: Any) -> JobContext:
    return JobContext(
        workdir=workdir, timeout=RUN_TIMEOUT_S, deadline=time.monotonic() + RUN_TIMEOUT_S, **options
    )


@dataclass
class RunTimes:
    walls: list[float] = field(default_factory=list)
    comfys: list[float] = field(default_factory=list)

    @property
    def overheads(self) -> list[float]:
        return [wall - comfy for wall, comfy in zip(self.walls, self.comfys, strict=True)]


def time_runs(
    backend: ComfyUIBackend, client: ComfyClient, *, count: int, workdir: Path, first_id: int
) -> RunTimes:
    """``count`` small model-free jobs, one after the other, after one unmeasured job (the first
    one imports the video nodes' codecs). Generation ids ``first_id`` .. ``first_id + count``."""
    backend.run(small_job(first_id), _context(workdir))
    times = RunTimes()
    for i in range(1, count + 1):
        job = small_job(first_id + i)
        began = time.monotonic()
        outputs = backend.run(job, _context(workdir))
        times.walls.append(time.monotonic() - began)
        times.comfys.append(comfy_seconds(client, prompt_id_for(job)))
        if not outputs or outputs[0].path.stat().st_size == 0:
            raise RuntimeError(f"job {job.generation_id} gave no video")
        for output in outputs:
            output.path.unlink()
    return times


class CancelMidNode:
    """Cancels ``after`` seconds into the TestSleep node, as a filmmaker pressing Cancel mid-render."""

    def __init__(self, after: float = CANCEL_AFTER_S) -> None:
        self.after = after
        self.at = float("inf")

    def progress(self, percent: float, step: int | None, steps: int | None, message: str) -> None:
        if SLEEP_NODE in message and self.at == float("inf"):
            self.at = time.monotonic() + self.after

    def cancelled(self) -> bool:
        return time.monotonic() >= self.at


@dataclass
class CancelTimes:
    frees: list[float] = field(default_factory=list)  # cancel -> run gave the worker back
    queue_empty: int = 0  # of them, how often ComfyUI's queue was empty right after


def time_cancels(
    backend: ComfyUIBackend, client: ComfyClient, *, count: int, workdir: Path, first_id: int
) -> CancelTimes:
    """``count`` jobs held in TestSleep (``SLEEP_S``), each cancelled mid-node. Generation ids
    ``first_id + 1`` .. ``first_id + count``. RuntimeError when a job is not stopped."""
    times = CancelTimes()
    for i in range(1, count + 1):
        job = small_job(first_id + i, sleep=SLEEP_S)
        canceller = CancelMidNode()
        ctx = _context(workdir, on_progress=canceller.progress, is_cancelled=canceller.cancelled)
        try:
            backend.run(job, ctx)
        except JobCancelled:
            times.frees.append(time.monotonic() - canceller.at)
        else:
            raise RuntimeError(f"job {job.generation_id} ran to its end instead of being cancelled")
        queue = client.queue()
        times.queue_empty += not queue["queue_running"] and not queue["queue_pending"]
    return times
