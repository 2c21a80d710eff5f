from __future__ import annotations

from dataclasses import fields

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .planner import Shape, capacity


class ShapeForm(forms.Form):
    filmmakers = forms.IntegerField(min_value=1, max_value=500, initial=20)
    rounds = forms.IntegerField(min_value=1, max_value=50, initial=5)
    per_round = forms.IntegerField(
        label="Generations per filmmaker per round", min_value=1, max_value=100, initial=6
    )
    minutes_per_job = forms.FloatField(label="Minutes per job", min_value=0.1, max_value=120, initial=4)
    round_minutes = forms.FloatField(
        label="Minutes of generating per round", min_value=1, max_value=600, initial=30
    )
    price_per_hour = forms.FloatField(label="Price per GPU-hour", min_value=0, max_value=1000, initial=3.0)
    billing_seconds = forms.IntegerField(
        label="Billing granularity (seconds)", min_value=1, max_value=3600, initial=1
    )
    cold_start_s = forms.FloatField(label="Cold start (seconds)", min_value=0, max_value=3600, initial=60)


@login_required
@require_GET
def planner(request: HttpRequest) -> HttpResponse:
    """How many containers a workshop needs, what it costs, and how long the last first take waits."""
    if not request.user.is_instructor:
        raise PermissionDenied
    form = ShapeForm(request.GET or {f.name: f.default for f in fields(Shape)})
    result = capacity(Shape(**form.cleaned_data)) if form.is_valid() else None
    template = "generations/planner.html#result" if request.htmx else "generations/planner.html"
    return render(request, template, {"form": form, "plan": result})
