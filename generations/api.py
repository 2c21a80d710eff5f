"""The operators' API: queue status and workers as JSON, and Prometheus metrics, behind a Bearer
token (OPERATOR_API_TOKEN; unset turns the API off)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django.conf import settings
from django.db.models import Count, F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import autoscale, broker, costs, fleet
from .models import Generation, Worker

S = Generation.Status
DURATION_BUCKETS = (30, 60, 120, 180, 240, 300, 450, 600, 900, 1800)


def token_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        expected = settings.OPERATOR_API_TOKEN
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not expected:
            return JsonResponse({"error": "The operators' API is off: set OPERATOR_API_TOKEN."}, status=404)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            return JsonResponse({"error": "A valid Bearer token is required."}, status=401)
        return view(request, *args, **kwargs)

    return wrapped


def queue_status() -> dict[str, int]:
    counts = dict(Generation.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
    return {
        "pending": counts.get(S.QUEUED, 0) + counts.get(S.DISPATCHED, 0),
        "running": counts.get(S.RUNNING, 0),
        "completed": counts.get(S.SUCCEEDED, 0),
        "failed": counts.get(S.FAILED, 0),
        "active_workers": len([w for w in fleet.workers(broker.connection()) if w.state != "draining"]),
    }


@require_GET
@token_required
def api_queue_status(request: HttpRequest) -> HttpResponse:
    return JsonResponse(queue_status())


@require_GET
@token_required
def api_workers(request: HttpRequest) -> HttpResponse:
    live = {w.name: w for w in fleet.workers(broker.connection())}
    rows = [
        {
            "id": w.name,
            "provider": w.provider,
            "state": live[w.name].state if w.name in live else "gone",
            "gpu": w.gpu,
            "current_job": live[w.name].generation_id if w.name in live else None,
        }
        for w in Worker.objects.filter(name__in=live)
    ]
    return JsonResponse(rows, safe=False)


class WorkshopCollector(Collector):
    """Reads the figures from the database and Redis at each scrape."""

    def collect(self) -> Iterator[Any]:
        conn = broker.connection()
        depth = GaugeMetricFamily("workshop_queue_depth", "Generations waiting, per queue", labels=["queue"])
        waiting = dict(
            Generation.objects.filter(status__in=(S.QUEUED, S.DISPATCHED))
            .values("template__queue")
            .annotate(n=Count("id"))
            .values_list("template__queue", "n")
        )
        for queue in settings.RQ_QUEUE_NAMES:
            depth.add_metric([queue], waiting.get(queue, 0))
        yield depth
        yield GaugeMetricFamily(
            "workshop_running",
            "Generations running",
            value=Generation.objects.filter(status=S.RUNNING).count(),
        )
        by_state = GaugeMetricFamily("workshop_workers", "Live GPU workers by state", labels=["state"])
        states: dict[str, int] = {"warming": 0, "idle": 0, "busy": 0, "draining": 0}
        for w in fleet.workers(conn):
            states[w.state] = states.get(w.state, 0) + 1
        for state, n in states.items():
            by_state.add_metric([state], n)
        yield by_state
        desired = GaugeMetricFamily("workshop_desired_workers", "The autoscaler's target", labels=["queue"])
        published = autoscale.published(conn)
        for queue in settings.RQ_QUEUE_NAMES:
            desired.add_metric([queue], published.get(queue, 0))
        yield desired
        yield GaugeMetricFamily("workshop_spend", "GPU spend so far", value=costs.spend().total)
        yield self._durations()

    def _durations(self) -> HistogramMetricFamily:
        took = [
            d.total_seconds()
            for d in Generation.objects.filter(status=S.SUCCEEDED, started_at__isnull=False)
            .annotate(took=F("finished_at") - F("started_at"))
            .values_list("took", flat=True)
        ]
        buckets = [(str(b), sum(1 for t in took if t <= b)) for b in DURATION_BUCKETS] + [("+Inf", len(took))]
        return HistogramMetricFamily(
            "workshop_job_duration_seconds",
            "GPU time of successful generations",
            buckets=buckets,
            sum_value=sum(took),
        )


@require_GET
@token_required
def metrics(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry()
    registry.register(WorkshopCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
