"""The built-in workflow templates: their API-format workflows (JSON files in ``workflows/``), their
parameter specs, and ``template_install`` that creates or updates them by slug.

``manage.py load_templates`` installs them; it is safe to run again after every deploy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.db import transaction

from generations.models import WorkflowTemplate

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"


@cache
def _workflow_text(filename: str) -> str:
    return (WORKFLOWS_DIR / filename).read_text(encoding="utf-8")


def workflow_load(filename: str) -> dict[str, Any]:
    """A fresh copy of a shipped API-format workflow (callers may change it)."""
    return json.loads(_workflow_text(filename))


@dataclass(frozen=True)
class BuiltIn:
    slug: str
    name: str
    kind: str
    description: str
    workflow_file: str
    param_spec: list[dict[str, Any]]
    queue: str
    estimated_seconds: int
    timeout_seconds: int
    requirements: str = ""

    def values(self) -> dict[str, Any]:
        """The template's fields as ``template_install`` writes them."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "workflow": workflow_load(self.workflow_file),
            "param_spec": self.param_spec,
            "queue": self.queue,
            "estimated_seconds": self.estimated_seconds,
            "timeout_seconds": self.timeout_seconds,
            "requirements": self.requirements,
        }


# EmptyImage (frames = batch) -> ImageAddNoise -> CreateVideo -> SaveVideo h264: the recorded
# `video_mp4_h264` workflow of tests/fixtures/comfyui/model_free_workflows.json, which ran on a stock server.
MODEL_FREE_SPEC: list[dict[str, Any]] = [
    {
        "name": "seed",
        "label": "Seed",
        "type": "seed",
        "targets": [["2", "seed"]],
        "help": "Leave blank for a random seed.",
    },
    {
        "name": "frames",
        "label": "Frames",
        "type": "int",
        "default": 24,
        "min": 1,
        "max": 240,
        "targets": [["1", "batch_size"]],
        "help": "Length of the clip, 1 to 240 frames.",
    },
    # H.264 in yuv420p needs even sizes: an odd one fails at SaveVideo (trace 13_runtime_error).
    {
        "name": "width",
        "label": "Width",
        "type": "int",
        "default": 128,
        "min": 32,
        "max": 1280,
        "step": 2,
        "targets": [["1", "width"]],
        "help": "Even, 32 to 1280.",
    },
    {
        "name": "height",
        "label": "Height",
        "type": "int",
        "default": 96,
        "min": 32,
        "max": 720,
        "step": 2,
        "targets": [["1", "height"]],
        "help": "Even, 32 to 720.",
    },
    {
        "name": "fps",
        "label": "Frames per second",
        "type": "int",
        "default": 24,
        "min": 1,
        "max": 60,
        "targets": [["3", "fps"]],
    },
]

MODEL_FREE = BuiltIn(
    slug="model-free-video",
    name="Model-free test clip",
    kind=WorkflowTemplate.Kind.VIDEO,
    description=(
        "Grey frames with noise, saved as an H.264 MP4: runs on any ComfyUI with no weights. "
        "For the docs, the tests and a first check of a new GPU host."
    ),
    workflow_file="model_free_video.json",
    param_spec=MODEL_FREE_SPEC,
    queue="video",
    estimated_seconds=5,
    timeout_seconds=300,
)

# Node ids are those ComfyUI's "Export (API)" gives the nodes of subgraph instance 92 of the
# reference (templates/ltx2_text_to_video.json): "92:<inner id>"; "75" is the top-level SaveVideo.
LTX2_NEGATIVE = (
    "blurry, low quality, still frame, frames, watermark, overlay, titles, has blurbox, has subtitles"
)

LTX2_SPEC: list[dict[str, Any]] = [
    {
        "name": "prompt",
        "label": "Prompt",
        "type": "text",
        "max": 2000,
        "targets": [["92:3", "text"]],
        "help": "Describe what happens over time, the visual details, the camera, the sounds and dialogue.",
    },
    {
        "name": "negative_prompt",
        "label": "Negative prompt",
        "type": "text",
        "default": LTX2_NEGATIVE,
        "max": 1000,
        "required": False,
        "targets": [["92:4", "text"]],
        "help": "What to keep out of the shot.",
    },
    {
        "name": "seed",
        "label": "Seed",
        "type": "seed",
        "targets": [["92:11", "noise_seed"]],
        "help": "Leave blank for a random seed.",
    },
    # One primitive feeds both the video latent's length and the audio latent's frame count.
    {
        "name": "frames",
        "label": "Frames",
        "type": "int",
        "default": 121,
        "min": 9,
        "max": 241,
        "step": 8,
        "offset": 1,
        "targets": [["92:62", "value"]],
        "help": "8k+1 frames, 9 to 241: 121 is 5 seconds at 24 fps.",
    },
    # The reference's note asks for multiples of 32, but its first stage samples at half size
    # (ImageScaleBy 0.5 -> EmptyLTXVLatentVideo, which floors to 32) and the latent upscale doubles
    # that: only a multiple of 64 comes out at the size asked for. Its default 720 renders 704.
    {
        "name": "width",
        "label": "Width",
        "type": "int",
        "default": 1280,
        "min": 256,
        "max": 1920,
        "step": 64,
        "targets": [["92:89", "width"]],
        "help": "A multiple of 64, 256 to 1920.",
    },
    {
        "name": "height",
        "label": "Height",
        "type": "int",
        "default": 704,
        "min": 256,
        "max": 1088,
        "step": 64,
        "targets": [["92:89", "height"]],
        "help": "A multiple of 64, 256 to 1088 (1280x704 is about 720p).",
    },
    # The reference keeps the frame rate in two boxes (int for the audio latent, float for the
    # conditioning and the video) and asks users to keep them equal: one field sets both.
    {
        "name": "fps",
        "label": "Frames per second",
        "type": "int",
        "default": 24,
        "min": 12,
        "max": 50,
        "targets": [["92:99", "value"], ["92:102", "value"]],
    },
    {
        "name": "steps",
        "label": "Steps",
        "type": "int",
        "default": 20,
        "min": 8,
        "max": 50,
        "targets": [["92:9", "steps"]],
        "help": "Sampling steps of the first stage; the refine stage always takes 3.",
    },
]

LTX2 = BuiltIn(
    slug="ltx2-text-to-video",
    name="LTX-2 text to video",
    kind=WorkflowTemplate.Kind.VIDEO,
    description=(
        "LTX-2 19B text to video with sound, in two stages (half-size sampling, 2x latent upscale, "
        "distilled-LoRA refine), from ComfyUI's LTX-2 template. 121 frames at 1280x704 by default."
    ),
    workflow_file="ltx2_text_to_video.json",
    param_spec=LTX2_SPEC,
    queue="video",
    estimated_seconds=240,
    timeout_seconds=1800,
    requirements=(
        "LTX-2 nodes (a ComfyUI newer than 0.3.75) and weights: checkpoints/ltx-2-19b-dev-fp8.safetensors, "
        "text_encoders/gemma_3_12B_it_fp4_mixed.safetensors, loras/ltx-2-19b-distilled-lora-384.safetensors, "
        "latent_upscale_models/ltx-2-spatial-upscaler-x2-1.0.safetensors"
    ),
)

BUILT_INS: tuple[BuiltIn, ...] = (MODEL_FREE, LTX2)


def template_install(builtin: BuiltIn) -> tuple[WorkflowTemplate, str]:
    """Create the template, or bring the one with its slug back to the shipped version.

    Returns the template and what happened: "created", "updated" or "unchanged". Raises
    ``ValidationError`` when it does not validate here (an unknown queue, a name taken by another slug).
    """
    values = builtin.values()
    with transaction.atomic():
        template = WorkflowTemplate.objects.select_for_update().filter(slug=builtin.slug).first()
        if template is None:
            template, action = WorkflowTemplate(slug=builtin.slug, **values), "created"
        elif all(getattr(template, key) == value for key, value in values.items()):
            return template, "unchanged"
        else:
            for key, value in values.items():
                setattr(template, key, value)
            action = "updated"
        template.full_clean()
        template.save()
    return template, action
