"""The capacity planner and the GPU hosts page (instructors), and the operators' API (a Bearer
token): queue status, workers, Prometheus metrics."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import fields
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from accounts.views import instructor_required
from generations.broker.connection import connection
from generations.broker.heartbeats import workers
from generations.domain.capacity import Shape, capacity
from generations.fleet import hosts
from generations.fleet.metrics import WorkshopCollector, queue_status
from generations.models import GpuHost, SecurityEvent, Worker


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


# --- GPU hosts (instructors; the admin has the same) -----------------------------------------


class HostForm(forms.Form):
    name = forms.RegexField(
        regex=hosts.NAME, max_length=40, help_text="Lower-case letters, digits and hyphens, e.g. verda-h100-1"
    )
    kind = forms.ChoiceField(choices=GpuHost.Kind.choices, label="Where it runs")
    note = forms.CharField(max_length=200, required=False)


@instructor_required
@require_http_methods(["GET", "POST"])
def fleet_hosts(request: HttpRequest) -> HttpResponse:
    """The enrolled GPU hosts, "Add a GPU host" (its environment is shown once), and "Revoke"."""
    form = HostForm(request.POST or None)
    enrolment = None
    if request.method == "POST" and form.is_valid():
        try:
            enrolment = hosts.host_enrol(**form.cleaned_data, by=request.user)
        except hosts.EnrolRefused as exc:
            form.add_error("name", str(exc))
        else:
            form = HostForm()
    context = {
        "form": form,
        "enrolment": enrolment,
        "hosts": GpuHost.objects.prefetch_related("workers"),
        "incidents": SecurityEvent.objects.select_related("host")[:20],
    }
    response = render(request, "generations/instructor/fleet.html", context)
    response["Cache-Control"] = "no-store"  # the page may hold a secret
    return response


@instructor_required
@require_POST
def fleet_host_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    host = get_object_or_404(GpuHost, pk=pk)
    hosts.host_revoke(host=host, by=request.user)
    return redirect("instructor-fleet")


# --- The operators' API (OPERATOR_API_TOKEN; unset turns it off) ---------------------------


def token_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        expected = settings.OPERATOR_API_TOKEN
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip() if scheme == "Bearer" else ""
        if not expected:
            return JsonResponse({"error": "The operators' API is off: set OPERATOR_API_TOKEN."}, status=404)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            return JsonResponse({"error": "A valid Bearer token is required."}, status=401)
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@token_required
def api_queue_status(request: HttpRequest) -> HttpResponse:
    return JsonResponse(queue_status())


@require_GET
@token_required
def api_workers(request: HttpRequest) -> HttpResponse:
    live = {w.name: w for w in workers(connection())}
    rows = [
        {
            "id": w.name,
            "provider": w.provider,
            "state": live[w.name].state,
            "gpu": w.gpu,
            "current_job": live[w.name].generation_id,
        }
        for w in Worker.objects.filter(name__in=live)
    ]
    return JsonResponse(rows, safe=False)


@require_GET
@token_required
def metrics(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry()
    registry.register(WorkshopCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
