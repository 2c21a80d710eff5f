"""Importing a ComfyUI workflow as a template: reading an API-format file (and refusing the UI format
with a way out), proposing a parameter mapping, and the admin's forms to confirm and edit it.

The proposal only guesses from input names and a few node classes; the admin confirms every field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from generations.models import WorkflowTemplate
from workshop.inputs import int_or_none

NODES_FILE = Path(__file__).resolve().parents[1] / "workflows" / "comfyui_0.3.64_nodes.json"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# Deeper than any real workflow (node → inputs → a list value is 4); bounds every walk over it.
MAX_DEPTH = 32
# ComfyUI's seeds go up to 2**64 - 1; nothing real is larger.
MAX_INT = 2**64

EXPORT_HINT = (
    "This is a ComfyUI UI workflow (it has “nodes” and “links”), the format ComfyUI saves for its editor; "
    "the workshop needs the API format. In ComfyUI, open the workflow and choose Workflow → Export (API) "
    "(in older versions, turn on “Enable Dev mode Options” in the settings and use “Save (API Format)”), "
    "then upload the file that it saves."
)

# Output nodes of custom packs and of ComfyUI versions newer than the recorded 0.3.64.
EXTRA_OUTPUT_NODES = frozenset(
    {"SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio", "VHS_VideoCombine", "SaveAnimatedGIF"}
)
VIDEO_CLASSES = frozenset(
    {"CreateVideo", "SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG", "VHS_VideoCombine"}
)
# Encoders into yuv420p (H.264, VP9, AV1) need even sizes; animated WebP and PNG do not.
EVEN_SIZE_CLASSES = frozenset({"CreateVideo", "SaveVideo", "SaveWEBM", "VHS_VideoCombine"})
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")

TEXT_INPUTS = ("text", "prompt", "text_g", "text_l", "clip_l", "t5xxl")
SEED_INPUTS = ("seed", "noise_seed")
FRAME_INPUTS = (
    "length",
    "frames",
    "num_frames",
    "frame_count",
    "frames_number",
    "video_frames",
    "video_length",
)
FPS_INPUTS = ("fps", "frame_rate")

# Size and length rules of the latent nodes (their inputs' "step" in /object_info). A causal video
# VAE takes k*step+1 frames: 8k+1 for LTX and Cosmos, 4k+1 for Hunyuan and Wan, 6k+1 for Mochi.
SIZE_STEPS = {
    "EmptyLatentImage": 8,
    "EmptySD3LatentImage": 16,
    "EmptyLTXVLatentVideo": 32,
    "LTXVImgToVideo": 32,
    "EmptyHunyuanLatentVideo": 16,
    "EmptyMochiLatentVideo": 8,
    "EmptyCosmosLatentVideo": 16,
    "WanImageToVideo": 16,
}
FRAME_STEPS = {
    "EmptyLTXVLatentVideo": 8,
    "LTXVImgToVideo": 8,
    "EmptyCosmosLatentVideo": 8,
    "EmptyHunyuanLatentVideo": 4,
    "WanImageToVideo": 4,
    "EmptyMochiLatentVideo": 6,
}

LABELS = {
    "prompt": "Prompt",
    "negative_prompt": "Negative prompt",
    "seed": "Seed",
    "frames": "Frames",
    "width": "Width",
    "height": "Height",
    "fps": "Frames per second",
    "steps": "Steps",
}


class WorkflowImportError(ValueError):
    """The file cannot become a template; the message says why and what to do."""


@cache
def _stock_nodes() -> dict[str, Any]:
    return json.loads(NODES_FILE.read_text(encoding="utf-8"))


def is_output_node(class_type: str) -> bool:
    """Whether ComfyUI runs this class as a target (only workflows with one are accepted)."""
    known = set(_stock_nodes()["output_nodes"]) | EXTRA_OUTPUT_NODES
    return class_type in known or class_type.startswith(("Save", "Preview"))


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _refuse_constant(name: str) -> Any:
    raise WorkflowImportError(f"The workflow holds {name}, which is not a number ComfyUI can take.")


def _check_values(data: Any) -> None:
    """Refuse what JSON allows but a template cannot hold: nesting deeper than MAX_DEPTH, numbers
    that are not finite or beyond MAX_INT, and text PostgreSQL cannot store (NUL, lone surrogates)."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise WorkflowImportError(f"The workflow is nested more than {MAX_DEPTH} levels deep.")
        if isinstance(value, dict):
            stack += [(k, depth + 1) for k in value] + [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
        elif isinstance(value, float) and not math.isfinite(value):
            _refuse_constant(str(value))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT:
            raise WorkflowImportError(f"The workflow holds a number too large for ComfyUI: {value:.3e}")
        elif isinstance(value, str) and ("\x00" in value or _has_surrogate(value)):
            shown = value[:40].encode("unicode_escape").decode()
            raise WorkflowImportError(f"The workflow holds text with a NUL or an unpaired surrogate: {shown}")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def workflow_parse(raw: bytes | str) -> dict[str, dict[str, Any]]:
    """Read an API-format workflow; raise ``WorkflowImportError`` with a message for anything else."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise WorkflowImportError("This file is not text: upload the .json file ComfyUI saved.") from exc
    except json.JSONDecodeError as exc:
        raise WorkflowImportError(
            f"This file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from exc
    except WorkflowImportError:
        raise
    except RecursionError:
        raise WorkflowImportError(f"The workflow is nested more than {MAX_DEPTH} levels deep.") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise WorkflowImportError(f"This file holds a number ComfyUI cannot take ({exc}).") from None
    _check_values(data)
    if not isinstance(data, dict):
        raise WorkflowImportError("An API-format workflow is a JSON object of nodes keyed by id.")
    if isinstance(data.get("nodes"), list) or isinstance(data.get("links"), list):
        raise WorkflowImportError(EXPORT_HINT)
    if not data:
        raise WorkflowImportError("The workflow has no nodes.")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowImportError(
                f"Node {node_id} has no class_type: this is not an API-format workflow."
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowImportError(f"Node {node_id} ({node['class_type']}): its inputs are not an object.")
        node.setdefault("inputs", {})
        for name, value in node["inputs"].items():
            if is_link(value) and value[0] not in data:
                raise WorkflowImportError(
                    f"Node {node_id} ({node['class_type']}) input {name!r} links to node {value[0]}, "
                    "which the workflow does not have."
                )
    if not any(is_output_node(node["class_type"]) for node in data.values()):
        raise WorkflowImportError(
            "The workflow has no output node (such as SaveVideo or SaveImage), so ComfyUI would refuse it: "
            "add one in ComfyUI and export it again."
        )
    return data


def _node_key(node_id: str) -> tuple[tuple[int, str], ...]:
    # "92:10" after "92:9"; ids that are not numbers sort after the numbers.
    parts = ((int_or_none(p), p) for p in re.split(r"[:.]", node_id))
    return tuple((n, "") if n is not None else (1 << 62, p) for n, p in parts)


def node_ids(workflow: dict[str, Any]) -> list[str]:
    return sorted(workflow, key=_node_key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class LiteralInput:
    """A node input holding a value (not a link): something a field may write to."""

    node: str
    input: str
    class_type: str
    title: str
    value: Any

    @property
    def key(self) -> str:
        return json.dumps([self.node, self.input])

    @property
    def label(self) -> str:
        shown = json.dumps(self.value)
        shown = shown if len(shown) <= 40 else shown[:37] + "…"
        name = self.class_type if self.title in ("", self.class_type) else f"{self.title} ({self.class_type})"
        return f"{self.node} {name}: {self.input} = {shown}"


def literal_inputs(workflow: dict[str, Any]) -> list[LiteralInput]:
    found = []
    for node_id in node_ids(workflow):
        node = workflow[node_id]
        title = str((node.get("_meta") or {}).get("title") or "")
        for name, value in node["inputs"].items():
            if not is_link(value):
                found.append(LiteralInput(node_id, name, node["class_type"], title, value))
    return found


def _source(workflow: dict[str, Any], node_id: str, name: str) -> tuple[str, str, Any] | None:
    """The literal behind an input: its own value, or the value of the primitive it links to."""
    value = workflow[node_id]["inputs"][name]
    if not is_link(value):
        return node_id, name, value
    source_id = value[0]
    source = workflow[source_id]
    cls = source["class_type"]
    if cls.startswith("Primitive") or "Constant" in cls:
        for key in ("value", "string", "text"):
            if key in source["inputs"] and not is_link(source["inputs"][key]):
                return source_id, key, source["inputs"][key]
    return None


def _consumers(workflow: dict[str, Any], node_id: str) -> list[tuple[str, str]]:
    return [
        (other_id, name)
        for other_id in node_ids(workflow)
        for name, value in workflow[other_id]["inputs"].items()
        if is_link(value) and value[0] == node_id
    ]


def polarity(workflow: dict[str, Any], node_id: str) -> str:
    """Which side a text encoder is on: "negative" when its conditioning reaches a ``negative``
    input before a ``positive`` one (breadth first), else "positive"."""
    seen, frontier = {node_id}, [node_id]
    for _depth in range(6):
        following = []
        for current in frontier:
            for consumer, name in _consumers(workflow, current):
                if name in ("negative", "positive"):
                    return name
                if consumer not in seen:
                    seen.add(consumer)
                    following.append(consumer)
        frontier = following
    return "positive"


@dataclass
class _Group:
    name: str
    type: str
    targets: list[tuple[str, str]] = field(default_factory=list)
    defaults: list[Any] = field(default_factory=list)
    consumers: set[str] = field(default_factory=set)

    def add(self, target: tuple[str, str], value: Any, consumer_class: str) -> None:
        self.consumers.add(consumer_class)
        if target not in self.targets:
            self.targets.append(target)
            self.defaults.append(value)


def _align_down(value: int, step: int, offset: int) -> int:
    return value - (value - offset) % step


def _spec_field(group: _Group, even: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": group.name,
        "label": LABELS.get(group.name, group.name.replace("_", " ").capitalize()),
        "type": group.type,
        "targets": [list(t) for t in group.targets],
    }
    default = group.defaults[0]
    if group.type == "text":
        if group.name.startswith("negative"):
            spec.update(default=default, required=False)
        return spec
    if group.type == "seed":
        return spec
    if group.type == "int":
        default = int(default)
    spec["default"] = default
    if group.name in ("width", "height"):
        step = math.lcm(*(SIZE_STEPS.get(c, 1) for c in group.consumers), 2 if even else 1)
        spec.update(min=min(default, math.ceil(64 / step) * step), max=max(default, 2048))
        if step > 1:
            spec["step"] = step
    elif group.name == "frames":
        step = max((FRAME_STEPS.get(c, 1) for c in group.consumers), default=1)
        offset = 1 if step > 1 else 0
        spec.update(min=min(default, step + offset), max=max(default, _align_down(241, step, offset)))
        if step > 1:
            spec.update(step=step, offset=offset)
    elif group.name == "fps":
        spec.update(min=min(default, 1), max=max(default, 60))
    elif group.name == "steps":
        spec.update(min=min(default, 1), max=max(default, 50))
    return spec


@dataclass(frozen=True)
class Proposal:
    workflow: dict[str, Any]
    fields: list[dict[str, Any]]
    kind: str
    requirements: str


def propose(workflow: dict[str, Any]) -> Proposal:
    """Guess a parameter spec: text encoders' text -> prompt (or negative_prompt when it reaches a
    sampler's negative), seeds -> seed, width/height, length -> frames (an image batch in a video
    workflow), fps/frame_rate -> fps, steps -> steps. Links to primitives are followed to the primitive.
    """
    classes = {node["class_type"] for node in workflow.values()}
    video, even = bool(classes & VIDEO_CLASSES), bool(classes & EVEN_SIZE_CLASSES)
    groups: dict[str, _Group] = {}
    texts: dict[tuple[str, str], str] = {}  # (polarity, text) -> field name

    def group(name: str, kind: str) -> _Group:
        return groups.setdefault(name, _Group(name, kind))

    for node_id in node_ids(workflow):
        cls = workflow[node_id]["class_type"]
        for name in list(workflow[node_id]["inputs"]):
            found = _source(workflow, node_id, name)
            if found is None:
                continue
            target, value = (found[0], found[1]), found[2]
            if name in TEXT_INPUTS and "Encode" in cls and isinstance(value, str):
                side = polarity(workflow, node_id)
                base = "prompt" if side == "positive" else "negative_prompt"
                same = sum(1 for (s, _t) in texts if s == side)
                field_name = texts.setdefault((side, value), base if not same else f"{base}_{same + 1}")
                group(field_name, "text").add(target, value, cls)
            elif not _is_number(value):
                continue
            elif name in SEED_INPUTS:
                group("seed", "seed").add(target, value, cls)
            elif name in ("width", "height"):
                group(name, "int").add(target, value, cls)
            elif name in FRAME_INPUTS:
                group("frames", "int").add(target, value, cls)
            elif name in FPS_INPUTS:
                group("fps", "float").add(target, value, cls)
            elif name == "steps":
                group("steps", "int").add(target, value, cls)
    if video and "frames" not in groups:
        # A video made of an image batch: the batch is the clip's length (the model-free template).
        for item in literal_inputs(workflow):
            if item.input == "batch_size" and item.class_type.startswith("Empty") and _is_number(item.value):
                group("frames", "int").add((item.node, item.input), item.value, item.class_type)
    if "fps" in groups and all(float(v).is_integer() for v in groups["fps"].defaults):
        groups["fps"].type = "int"
    order = ["prompt", "negative_prompt", "seed", "frames", "width", "height", "fps", "steps"]
    names = sorted(groups, key=lambda n: (order.index(re.sub(r"_\d+$", "", n)), n))
    return Proposal(
        workflow=workflow,
        fields=[_spec_field(groups[n], even) for n in names],
        kind=WorkflowTemplate.Kind.VIDEO if video else WorkflowTemplate.Kind.IMAGE,
        requirements=requirements_propose(workflow),
    )


def requirements_propose(workflow: dict[str, Any]) -> str:
    """Model files the workflow names and node classes a stock ComfyUI 0.3.64 lacks (max 300 chars)."""
    stock = set(_stock_nodes()["classes"])
    weights = sorted(
        {
            v
            for item in literal_inputs(workflow)
            if isinstance(v := item.value, str) and v.lower().endswith(MODEL_SUFFIXES)
        }
    )
    newer = sorted({n["class_type"] for n in workflow.values()} - stock)
    parts = []
    if weights:
        parts.append("Weights: " + ", ".join(weights))
    if newer:
        parts.append(f"nodes not in stock ComfyUI {_stock_nodes()['comfyui_version']}: " + ", ".join(newer))
    text = "; ".join(parts)
    return text if len(text) <= 300 else text[:299] + "…"
