"""Workflows shipped with the worker, in ComfyUI's API format.

``model_free_video.json`` runs on a stock ComfyUI with no model weights (EmptyImage ->
ImageAddNoise -> CreateVideo -> SaveVideo, H.264 MP4): the template for docs, tests and the
first check of a new GPU host. ``MODEL_FREE_VIDEO_PARAMS`` says which node input holds each
user-facing parameter (width and height must be even for H.264).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DIRECTORY = Path(__file__).resolve().parent
MODEL_FREE_VIDEO = DIRECTORY / "model_free_video.json"
MODEL_FREE_VIDEO_PARAMS = {
    "seed": ("2", "seed"),
    "frames": ("1", "batch_size"),
    "width": ("1", "width"),
    "height": ("1", "height"),
    "fps": ("3", "fps"),
}


def load(path: Path = MODEL_FREE_VIDEO) -> dict[str, Any]:
    workflow: dict[str, Any] = json.loads(path.read_text())
    return workflow


def model_free_video(*, seed: int, frames: int, width: int, height: int, fps: float) -> dict[str, Any]:
    """The model-free workflow with these values written into its nodes."""
    workflow = load()
    values = {"seed": seed, "frames": frames, "width": width, "height": height, "fps": float(fps)}
    for name, (node_id, input_name) in MODEL_FREE_VIDEO_PARAMS.items():
        workflow[node_id]["inputs"][input_name] = values[name]
    return workflow
