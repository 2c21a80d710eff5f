"""The instructor's forms: the workshop record and a round (with its reference images)."""

from __future__ import annotations

from typing import Any

from django import forms

from generations.models import Round, Workshop


class WorkshopForm(forms.ModelForm):
    class Meta:
        model = Workshop
        fields = ["name", "date", "gpu_budget"]
        labels = {"gpu_budget": "GPU budget"}
        widgets = {"date": forms.DateInput(attrs={"type": "date"})}


class _MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class _MultipleFileField(forms.FileField):
    widget = _MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = data if isinstance(data, list | tuple) else [data]
        return [super(_MultipleFileField, self).clean(f, initial) for f in files if f]


class RoundForm(forms.ModelForm):
    images = _MultipleFileField(
        required=False,
        label="Reference images",
        help_text="PNG, JPEG, WebP or GIF; shown under the brief on every filmmaker's page.",
        widget=_MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/webp,image/gif"}),
    )

    class Meta:
        model = Round
        fields = ["title", "brief", "templates", "quota", "circle_limit", "gallery_shared"]
        labels = {"circle_limit": "Circle-take limit", "gallery_shared": "Shared gallery"}
        widgets = {
            "templates": forms.CheckboxSelectMultiple,
            "brief": forms.Textarea(attrs={"rows": 6}),
        }
