"""The ComfyUI backend on a real ComfyUI: what a job costs beyond ComfyUI's own execution, and how
soon a cancel frees the worker.

Starts the ComfyUI that `deploy/bootstrap.py --comfyui` installs (0.3.75, on the CPU), then:
- 20 small model-free jobs (EmptyImage -> ImageAddNoise -> CreateVideo -> SaveVideo, 64x48, 9 frames,
  each with its own seed): wall time of `ComfyUIBackend.run` (submit, follow, fetch the mp4) against
  ComfyUI's execution time from its own timestamps (execution_start -> execution_success);
- 5 cancels: a job whose workflow holds ComfyUI's TestSleep node (30 s), cancelled 0.5 s into it;
  the time from the cancel until `run` gives the worker back, and whether ComfyUI's queue is empty.
The measuring is gpu_worker/measure.py's, which `gpu-worker accept` runs on a GPU host too.

Run: .venv/bin/python bench/comfyui.py   (no arguments; ends with one JSON line)
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_worker.backends.comfyui import ComfyUIBackend  # noqa: E402
from gpu_worker.comfy import ComfyClient  # noqa: E402
from gpu_worker.measure import percentile, time_cancels, time_runs  # noqa: E402
from tests.comfyui_real import RealComfyUI, installed  # noqa: E402

JOBS, CANCELS = 20, 5


def main() -> None:
    if not installed():
        sys.exit("No ComfyUI in .comfyui/: run python3 deploy/bootstrap.py --comfyui first.")
    base = Path(tempfile.mkdtemp(prefix="bench-comfyui-"))
    server = RealComfyUI(base).start()
    backend = ComfyUIBackend(url=server.url, client_id="bench")
    client = ComfyClient(server.url)
    start_id = random.randrange(10**6, 10**9)
    try:
        runs = time_runs(backend, client, count=JOBS, workdir=base, first_id=start_id)
        cancels = time_cancels(backend, client, count=CANCELS, workdir=base, first_id=start_id + JOBS)
    finally:
        client.close()
        server.stop()
    walls, comfys, overheads = runs.walls, runs.comfys, runs.overheads
    frees, queues_empty = cancels.frees, cancels.queue_empty

    rows = [
        ("model-free job, wall (run)", statistics.median(walls), percentile(walls, 0.9)),
        ("  ComfyUI's own execution", statistics.median(comfys), percentile(comfys, 0.9)),
        ("  backend overhead", statistics.median(overheads), percentile(overheads, 0.9)),
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
                "backend_overhead_p90_s": round(percentile(overheads, 0.9), 4),
                "cancels": CANCELS,
                "cancel_to_free_median_s": round(statistics.median(frees), 4),
                "cancel_to_free_max_s": round(max(frees), 4),
                "queue_empty_after_cancel": queues_empty,
            }
        )
    )


if __name__ == "__main__":
    main()
