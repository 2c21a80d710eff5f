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

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms import formset_factory
from django.utils.text import slugify

from .models import WorkflowTemplate
from .params import TYPES, ParamsForm, SpecError, parse_spec

NODES_FILE = Path(__file__).resolve().parent / "workflows" / "comfyui_0.3.64_nodes.json"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024

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


def workflow_parse(raw: bytes | str) -> dict[str, dict[str, Any]]:
    """Read an API-format workflow; raise ``WorkflowImportError`` with a message for anything else."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise WorkflowImportError("This file is not text: upload the .json file ComfyUI saved.") from exc
    except json.JSONDecodeError as exc:
        raise WorkflowImportError(
            f"This file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from exc
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
    return tuple((int(p), "") if p.isdigit() else (1 << 62, p) for p in re.split(r"[:.]", node_id))


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


# --- The admin's forms -------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Workflow (API format)",
        help_text="The .json file that ComfyUI's Workflow → Export (API) saves.",
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValidationError("This file is too large for a workflow (over 5 MB).")
        try:
            self.cleaned_data["workflow"] = workflow_parse(upload.read())
        except WorkflowImportError as exc:
            raise ValidationError(str(exc)) from exc
        return upload


class FieldForm(forms.Form):
    """One parameter of the template; ignored unless "use" is ticked."""

    use = forms.BooleanField(required=False, initial=True)
    name = forms.CharField(required=False, max_length=40)
    label = forms.CharField(required=False, max_length=80)
    # A blank first choice, so that an untouched empty row posts nothing and is skipped.
    type = forms.ChoiceField(required=False, choices=[("", "—"), *((t, t) for t in TYPES)])
    default = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 24})
    )
    min = forms.FloatField(required=False, widget=forms.NumberInput(attrs={"style": "width: 6em"}))
    max = forms.FloatField(required=False, widget=forms.NumberInput(attrs={"style": "width: 6em"}))
    step = forms.IntegerField(
        required=False, min_value=1, widget=forms.NumberInput(attrs={"style": "width: 4em"})
    )
    offset = forms.IntegerField(
        required=False, min_value=0, widget=forms.NumberInput(attrs={"style": "width: 4em"})
    )
    choices = forms.CharField(required=False, help_text="For a choice: comma-separated")
    required = forms.BooleanField(required=False)
    help = forms.CharField(required=False, max_length=200)
    targets = forms.MultipleChoiceField(required=False, widget=forms.SelectMultiple(attrs={"size": 4}))

    def __init__(self, *args: Any, target_choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["targets"].choices = target_choices

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("use"):
            return data
        if not re.fullmatch(r"[a-z][a-z0-9_]*", data.get("name") or ""):
            self.add_error("name", "A name in lower case: letters, digits and _ (for example frames).")
        if not data.get("type"):
            self.add_error("type", "Pick a type.")
        if not data.get("targets"):
            self.add_error("targets", "Pick at least one node input to write the value into.")
        return data

    def to_spec(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind = data["type"]
        spec: dict[str, Any] = {
            "name": data["name"],
            "label": data["label"] or data["name"].replace("_", " ").capitalize(),
            "type": kind,
            "required": bool(data["required"]),
            "targets": [json.loads(t) for t in data["targets"]],
        }
        default = data["default"] if kind == "text" else (data["default"] or "").strip()
        if default != "":
            spec["default"] = _typed(default, kind)
        for key in ("min", "max"):
            if data[key] is not None:
                spec[key] = int(data[key]) if float(data[key]).is_integer() else data[key]
        if data["step"]:
            spec["step"] = data["step"]
        if data["offset"]:
            spec["offset"] = data["offset"]
        if data["choices"]:
            spec["choices"] = [c.strip() for c in data["choices"].split(",") if c.strip()]
        if data["help"]:
            spec["help"] = data["help"]
        return spec


def _typed(value: str, kind: str) -> Any:
    # A default that does not convert is kept as text; the defaults check then names the field.
    try:
        if kind in ("int", "seed"):
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        return value
    return value


FieldFormSet = formset_factory(FieldForm, extra=2)


class TemplateForm(forms.ModelForm):
    class Meta:
        model = WorkflowTemplate
        fields = [
            "name",
            "slug",
            "kind",
            "description",
            "queue",
            "estimated_seconds",
            "timeout_seconds",
            "requirements",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "requirements": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"] = forms.ChoiceField(
            choices=[(q, q) for q in settings.RQ_QUEUE_NAMES], help_text=self.fields["queue"].help_text
        )


def _initial_row(spec: dict[str, Any]) -> dict[str, Any]:
    row = {key: spec.get(key) for key in ("name", "label", "type", "min", "max", "step", "offset", "help")}
    row["use"] = True
    row["default"] = "" if spec.get("default") is None else str(spec["default"])
    row["required"] = spec.get("required", spec["type"] != "seed")
    row["choices"] = ", ".join(spec.get("choices", ()))
    row["targets"] = [json.dumps(list(t)) for t in spec["targets"]]
    return row


class ImportMapping:
    """The confirm step: the template's own fields, one row per parameter, and the workflow.

    Built from a proposal (to show) or from the posted forms (to save).
    """

    def __init__(
        self,
        workflow: dict[str, Any],
        *,
        data: Any = None,
        proposal: Proposal | None = None,
        filename: str = "",
    ) -> None:
        self.workflow = workflow
        self.workflow_json = json.dumps(workflow, ensure_ascii=False)
        self.inputs = literal_inputs(workflow)
        self.errors: list[str] = []
        choices = [(i.key, i.label) for i in self.inputs]
        initial_meta: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        if proposal is not None:
            stem = Path(filename).stem or "imported workflow"
            kind = str(proposal.kind)
            initial_meta = {
                "name": stem.replace("_", " ").replace("-", " ").strip().capitalize()[:120],
                "slug": slugify(stem.replace("_", "-"))[:60],
                "kind": kind,
                "queue": kind if kind in settings.RQ_QUEUE_NAMES else settings.RQ_QUEUE_NAMES[0],
                "requirements": proposal.requirements,
            }
            rows = [_initial_row(spec) for spec in proposal.fields]
        self.meta = TemplateForm(data, initial=initial_meta, instance=WorkflowTemplate(workflow=workflow))
        self.fields = FieldFormSet(
            data, initial=rows, prefix="fields", form_kwargs={"target_choices": choices}
        )

    def spec(self) -> list[dict[str, Any]] | None:
        """The confirmed spec, or None with ``errors`` set."""
        if not self.fields.is_valid():
            return None
        spec = [form.to_spec() for form in self.fields.forms if form.cleaned_data.get("use")]
        try:
            params = parse_spec(spec, workflow=self.workflow)
        except SpecError as exc:
            self.errors.append(str(exc))
            return None
        # Each default must pass the same checks as a filmmaker's value would.
        defaults = {p.name: p.default for p in params if p.default not in (None, "")}
        check = ParamsForm([p for p in params if p.name in defaults], data=defaults)
        if not check.is_valid():
            for name, messages in check.errors.items():
                self.errors.extend(f"Default of {name}: {m}" for m in messages)
            return None
        return spec

    def save(self) -> WorkflowTemplate | None:
        spec = self.spec()
        if spec is not None:
            self.meta.instance.param_spec = spec
        if not self.meta.is_valid() or spec is None:
            return None
        return self.meta.save()
