"""The ComfyUI backend against a real ComfyUI server (see tests/comfyui_real.py)."""

from __future__ import annotations

import random
from pathlib import Path

import av

from gpu_worker import workflows
from gpu_worker.backends import JobSpec
from gpu_worker.backends.comfyui import ComfyUIBackend

from .conftest import Sinks


def test_it_renders_the_model_free_template_on_a_real_comfyui(tmp_path: Path, real_comfyui: str) -> None:
    workflow = workflows.model_free_video(seed=3, frames=9, width=64, height=48, fps=8)
    backend = ComfyUIBackend(url=real_comfyui, client_id="workshop-tests")
    job = JobSpec(random.randrange(10**6, 10**9), 1, "model-free", workflow, {})
    sinks = Sinks()
    [output] = backend.run(job, sinks.context(tmp_path, timeout=300))
    assert output.content_type == "video/mp4" and output.filename == f"model-free-g{job.generation_id}-a1.mp4"
    with av.open(str(output.path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 48)
        assert sum(1 for _ in container.decode(stream)) == 9
    assert "Node 4 of 4 (SaveVideo)" in [p[3] for p in sinks.progress]
