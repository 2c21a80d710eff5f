"""A template's parameter spec: parsing, the submit form built from it, and resolving
the submitted values into the ComfyUI workflow.

A spec is a list of fields, for example::

    {"name": "frames", "label": "Frames", "type": "int", "default": 25,
     "min": 9, "max": 121, "step": 8, "offset": 1,           # 8k+1
     "targets": [["1", "frames"]], "help": "Length of the clip"}

Types: text, int, float, seed (an int that is random when left blank), choice
(with "choices"). Each target is [node id, input name] in the workflow.
"""

from __future__ import annotations

import functools
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

TYPES = ("text", "int", "float", "seed", "choice")
SEED_MAX = 2**32 - 1


class SpecError(ValueError):
    """The template's spec itself is wrong (an admin's mistake, not a filmmaker's)."""


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    type: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: int | None = None
    offset: int = 0
    choices: tuple[str, ...] = ()
    required: bool = True
    help: str = ""
    targets: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def parse_spec(spec: Any, *, workflow: dict[str, Any] | None = None) -> list[Param]:
    if not isinstance(spec, list):
        raise SpecError("The parameter spec must be a list of fields.")
    params: list[Param] = []
    seen: set[str] = set()
    for i, raw in enumerate(spec):
        if not isinstance(raw, dict) or not raw.get("name"):
            raise SpecError(f"Field {i + 1} needs a name.")
        name = str(raw["name"])
        if name in seen:
            raise SpecError(f"Field {name!r} appears twice.")
        seen.add(name)
        kind = raw.get("type", "text")
        if kind not in TYPES:
            raise SpecError(f"Field {name!r} has unknown type {kind!r}; use one of {', '.join(TYPES)}.")
        if kind == "choice" and not raw.get("choices"):
            raise SpecError(f"Field {name!r} is a choice without choices.")
        targets = tuple((str(t[0]), str(t[1])) for t in raw.get("targets", []))
        if workflow is not None:
            for node, _input in targets:
                if node not in workflow or "inputs" not in workflow[node]:
                    raise SpecError(f"Field {name!r} targets node {node}, which the workflow does not have.")
        params.append(
            Param(
                name=name,
                label=str(raw.get("label") or name.replace("_", " ").capitalize()),
                type=kind,
                default=raw.get("default"),
                min=raw.get("min"),
                max=raw.get("max"),
                step=raw.get("step"),
                offset=int(raw.get("offset", 0)),
                choices=tuple(str(c) for c in raw.get("choices", ())),
                required=bool(raw.get("required", kind != "seed")),
                help=str(raw.get("help", "")),
                targets=targets,
            )
        )
    return params


def _step_validator(p: Param):  # type: ignore[no-untyped-def]
    def validate(value: int) -> None:
        if p.step and (value - p.offset) % p.step:
            form = f"{p.step}k+{p.offset}" if p.offset else f"a multiple of {p.step}"
            raise ValidationError(f"Must be {form} (for example {p.step * 2 + p.offset}).")

    return validate


def _field_for(p: Param) -> forms.Field:
    common: dict[str, Any] = {"label": p.label, "required": p.required, "help_text": p.help}
    if p.type == "text":
        return forms.CharField(
            initial=p.default,
            strip=True,
            max_length=int(p.max) if p.max else 2000,
            widget=forms.Textarea(attrs={"rows": 3}),
            **common,
        )
    if p.type in ("int", "seed"):
        lo = 0 if p.type == "seed" and p.min is None else p.min
        hi = SEED_MAX if p.type == "seed" and p.max is None else p.max
        validators = [_step_validator(p)] if p.step else []
        attrs: dict[str, Any] = {"step": p.step} if p.step else {}
        if p.offset:
            attrs["data-offset"] = p.offset  # the composer's length presets snap to step k + offset
        return forms.IntegerField(
            initial=p.default,
            min_value=lo,
            max_value=hi,
            validators=validators,
            widget=forms.NumberInput(attrs=attrs),
            **common,
        )
    if p.type == "float":
        return forms.FloatField(initial=p.default, min_value=p.min, max_value=p.max, **common)
    return forms.ChoiceField(initial=p.default, choices=[(c, c) for c in p.choices], **common)


class ParamsForm(forms.Form):
    """The submit form; its fields come from the template's spec."""

    def __init__(self, spec: list[Param], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        for p in spec:
            self.fields[p.name] = _field_for(p)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for p in self.spec:
            # A blank seed means "surprise me": pick one now so the take is reproducible.
            if p.type == "seed" and data.get(p.name) is None and p.name not in self.errors:
                data[p.name] = secrets.randbelow(SEED_MAX + 1)
        return data


def resolve_workflow(workflow: dict[str, Any], spec: list[Param], values: dict[str, Any]) -> dict[str, Any]:
    """Write each value into every node input its field targets; the template is left untouched."""
    # A copy through JSON (what a workflow is): a third of deepcopy's time on a real template's
    # hundred nodes, in every submission.
    resolved = json.loads(json.dumps(workflow))
    for p in spec:
        for node, input_name in p.targets:
            resolved[node]["inputs"][input_name] = values[p.name]
    return resolved


# --- The composer: presets people think in, the raw fields behind them -------------------------

# Lengths offered, in seconds; each becomes the nearest frame count the template allows.
LENGTHS = (2, 3, 4, 5, 8, 10, 15, 20)
# (label, width / height, what it is for)
ASPECTS = (
    ("16:9", 16 / 9, "widescreen"),
    ("2.39:1", 2.39, "scope"),
    ("4:3", 4 / 3, "academy"),
    ("1:1", 1.0, "square"),
    ("9:16", 9 / 16, "vertical"),
)
MAX_PRESETS = 6


@dataclass(frozen=True)
class Preset:
    """One chip of the composer: a label people think in and the exact values it sets."""

    label: str
    values: dict[str, int]
    detail: str  # what the values are, exactly ("121 frames · 5.0 s at 24 fps", "768×432")
    seconds: float | None = None  # a length preset's length (the page re-snaps it when fps changes)


def _int_param(spec: list[Param], name: str) -> Param | None:
    return next((p for p in spec if p.name == name and p.type == "int"), None)


def snap(p: Param, value: float) -> int | None:
    """The allowed value of `p` nearest `value` (its step and offset, within min and max)."""
    step = p.step or 1
    lo = int(p.min) if p.min is not None else None
    hi = int(p.max) if p.max is not None else None
    k = round((value - p.offset) / step)
    candidate = k * step + p.offset
    if lo is not None and candidate < lo:
        candidate = -(-(lo - p.offset) // step) * step + p.offset
    if hi is not None and candidate > hi:
        candidate = ((hi - p.offset) // step) * step + p.offset
    if (lo is not None and candidate < lo) or (hi is not None and candidate > hi):
        return None
    return int(candidate)


def length_presets(spec: list[Param], fps: float | None = None) -> list[Preset]:
    """Clip lengths in seconds, each the frame count the template allows nearest to it (8k+1 for
    LTX), kept when within 15 % of the length it is named for."""
    frames = _int_param(spec, "frames")
    rate = _int_param(spec, "fps")
    fps = fps or (float(rate.default) if rate and rate.default else None)
    if frames is None or not fps:
        return []
    presets: list[Preset] = []
    for seconds in LENGTHS:
        n = snap(frames, seconds * fps)
        if (
            n is None
            or abs(n / fps - seconds) > 0.15 * seconds
            or any(p.values["frames"] == n for p in presets)
        ):
            continue
        detail = f"{n} frames · {n / fps:.1f} s at {fps:g} fps"
        presets.append(Preset(f"{seconds} s", {"frames": n}, detail, seconds=seconds))
    return presets[:MAX_PRESETS]


def aspect_presets(spec: list[Param]) -> list[Preset]:
    """Aspect ratios at about the template's default picture area, as the sizes it allows."""
    width, height = _int_param(spec, "width"), _int_param(spec, "height")
    if width is None or height is None or not width.default or not height.default:
        return []
    return list(_aspects(width, height))


# Every form of a template asks again (each page, each submit answer): the search over every allowed
# size took 5 ms of a submit's 25. A template's params are few and change rarely.
@functools.lru_cache(maxsize=256)
def _aspects(width: Param, height: Param) -> tuple[Preset, ...]:
    area = float(width.default) * float(height.default)
    sizes = [(w, h) for w in _allowed(width) for h in _allowed(height)]
    presets: list[Preset] = []
    for label, ratio, use in ASPECTS:
        # Near the ratio first (a few percent), then near the default's area.
        w, h = min(
            sizes, key=lambda s: 10 * abs(math.log(s[0] / s[1] / ratio)) + abs(math.log(s[0] * s[1] / area))
        )
        if abs(math.log(w / h / ratio)) > 0.08 or any(p.values == {"width": w, "height": h} for p in presets):
            continue
        presets.append(Preset(label, {"width": w, "height": h}, f"{w}×{h} · {use}"))
    return tuple(presets)


def _allowed(p: Param) -> list[int]:
    step = p.step or 8
    lo = int(p.min) if p.min is not None else 64
    hi = int(p.max) if p.max is not None else 2048
    first = snap(p, lo) or lo
    return list(range(first, hi + 1, step))[:400]


@dataclass
class Composer:
    """The submit form as the round page lays it out: the words first, then presets, the seed,
    and the raw fields behind a disclosure (always reachable, always the values sent)."""

    words: list[Any]  # bound text fields (prompt, negative prompt)
    seed: Any | None  # the bound seed field
    lengths: list[Preset]
    aspects: list[Preset]
    raw: list[Any]  # every other bound field: frames, width, height, fps, steps...


def composer(form: ParamsForm) -> Composer:
    kinds = {p.name: p.type for p in form.spec}
    bound = list(form)
    return Composer(
        words=[f for f in bound if kinds.get(f.name) == "text"],
        seed=next((f for f in bound if kinds.get(f.name) == "seed"), None),
        lengths=length_presets(form.spec),
        aspects=aspect_presets(form.spec),
        raw=[f for f in bound if kinds.get(f.name) not in ("text", "seed")],
    )
