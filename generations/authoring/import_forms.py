"""The admin's import of a ComfyUI workflow: the upload, then the confirm step with one row per
proposed parameter (the admin edits and confirms every field) and the template's own fields."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.forms import formset_factory
from django.utils.text import slugify

from generations.authoring.importer import (
    MAX_UPLOAD_BYTES,
    Proposal,
    WorkflowImportError,
    literal_inputs,
    workflow_parse,
)
from generations.authoring.params import TYPES, ParamsForm, SpecError, parse_spec
from generations.models import WorkflowTemplate


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
    min = forms.FloatField(required=False, widget=forms.NumberInput(attrs={"class": "import-number"}))
    max = forms.FloatField(required=False, widget=forms.NumberInput(attrs={"class": "import-number"}))
    step = forms.IntegerField(
        required=False, min_value=1, widget=forms.NumberInput(attrs={"class": "import-small"})
    )
    offset = forms.IntegerField(
        required=False, min_value=0, widget=forms.NumberInput(attrs={"class": "import-small"})
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
