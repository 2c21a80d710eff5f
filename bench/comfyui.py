"""The ComfyUI backend on a real ComfyUI: what a job costs beyond ComfyUI's own execution, and how
soon a cancel frees the worker.

Starts the ComfyUI that `deploy/bootstrap.py --comfyui` installs (0.3.75, on the CPU), then:
- 20 small model-free jobs (EmptyImage -> ImageAddNoise -> CreateVideo -> SaveVideo, 64x48, 9 frames,
  each with its own seed): wall time of `ComfyUIBackend.run` (submit, follow, fetch the mp4) against
  ComfyUI's execution time from its own timestamps (execution_start -> execution_success);
- 5 cancels: a job whose workflow holds ComfyUI's TestSleep node (30 s), cancelled 0.5 s into it;
  the time from the cancel until `run` gives the worker back, and whether ComfyUI's queue is empty.

Run: .venv/bin/python bench/comfyui.py   (no arguments; ends with one JSON line)
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_worker import workflows  # noqa: E402
from gpu_worker.backends import JobCancelled, JobContext, JobSpec  # noqa: E402
from gpu_worker.backends.comfyui import ComfyUIBackend, prompt_id_for  # noqa: E402
from gpu_worker.comfy import ComfyClient  # noqa: E402
from tests.comfyui_real import RealComfyUI, installed, with_sleep  # noqa: E402

JOBS, CANCELS = 20, 5


def small_job(generation_id: int, *, sleep: float = 0.0) -> JobSpec:
    """A model-free job of its own seed (nothing cached), 64x48, 9 frames; optionally held in a TestSleep."""
    workflow = workflows.model_free_video(seed=generation_id, frames=9, width=64, height=48, fps=8)
    return JobSpec(generation_id, 1, "model-free", with_sleep(workflow, sleep) if sleep else workflow, {})


class Canceller:
    """Cancels 0.5 s after the TestSleep node starts, as a filmmaker pressing Cancel mid-render."""

    def __init__(self) -> None:
        self.at = float("inf")

    def progress(self, percent: float, step: int | None, steps: int | None, message: str) -> None:
        if "TestSleep" in message and self.at == float("inf"):
            self.at = time.monotonic() + 0.5

    def cancelled(self) -> bool:
        return time.monotonic() >= self.at


def comfy_seconds(client: ComfyClient, prompt_id: str) -> float:
    messages = dict((name, data) for name, data in client.history(prompt_id)["status"]["messages"])
    return (messages["execution_success"]["timestamp"] - messages["execution_start"]["timestamp"]) / 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    if not installed():
        sys.exit("No ComfyUI in .comfyui/: run python3 deploy/bootstrap.py --comfyui first.")
    base = Path(tempfile.mkdtemp(prefix="bench-comfyui-"))
    server = RealComfyUI(base).start()
    backend = ComfyUIBackend(url=server.url, client_id="bench")
    client = ComfyClient(server.url)
    start_id = random.randrange(10**6, 10**9)
    try:
        # One unmeasured job: the first one imports the video nodes' codecs.
        warm = small_job(start_id)
        backend.run(warm, JobContext(workdir=base))
        walls, comfys = [], []
        for i in range(1, JOBS + 1):
            job = small_job(start_id + i)
            began = time.monotonic()
            [output] = backend.run(job, JobContext(workdir=base))
            walls.append(time.monotonic() - began)
            comfys.append(comfy_seconds(client, prompt_id_for(job)))
            assert output.path.stat().st_size > 0
        overheads = [w - c for w, c in zip(walls, comfys, strict=True)]

        frees, queues_empty = [], 0
        for i in range(1, CANCELS + 1):
            job = small_job(start_id + JOBS + i, sleep=30.0)
            canceller = Canceller()
            ctx = JobContext(workdir=base, on_progress=canceller.progress, is_cancelled=canceller.cancelled)
            try:
                backend.run(job, ctx)
                raise AssertionError("the cancelled job succeeded")
            except JobCancelled:
                frees.append(time.monotonic() - canceller.at)
            queue = client.queue()
            queues_empty += not queue["queue_running"] and not queue["queue_pending"]
    finally:
        client.close()
        server.stop()

    rows = [
        ("model-free job, wall (run)", statistics.median(walls), pct(walls, 0.9)),
        ("  ComfyUI's own execution", statistics.median(comfys), pct(comfys, 0.9)),
        ("  backend overhead", statistics.median(overheads), pct(overheads, 0.9)),
        ("cancel -> worker free", statistics.median(frees), max(frees)),
    ]
    print(f"ComfyUI 0.3.75 on the CPU, {JOBS} jobs, {CANCELS} cancels")
    print(f"{'':32} {'median s':>9} {'p90/max s':>10}")
    for name, median, high in rows:
        print(f"{name:32} {median:9.3f} {high:10.3f}")
    print(f"ComfyUI queue empty after each cancel: {queues_empty}/{CANCELS}")
    print(
        json.dumps(
            {
                "jobs": JOBS,
                "job_wall_median_s": round(statistics.median(walls), 4),
                "comfyui_execution_median_s": round(statistics.median(comfys), 4),
                "backend_overhead_median_s": round(statistics.median(overheads), 4),
                "backend_overhead_p90_s": round(pct(overheads, 0.9), 4),
                "cancels": CANCELS,
                "cancel_to_free_median_s": round(statistics.median(frees), 4),
                "cancel_to_free_max_s": round(max(frees), 4),
                "queue_empty_after_cancel": queues_empty,
            }
        )
    )


if __name__ == "__main__":
    main()
