"""The operators' figures: the queue's status and the Prometheus metrics, read afresh at each call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Sum
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from generations.broker.connection import connection
from generations.broker.heartbeats import workers
from generations.fleet import autoscale
from generations.fleet.costs import spend_for
from generations.models import Generation, SecurityEvent, Workshop

S = Generation.Status
DURATION_BUCKETS = (30, 60, 120, 180, 240, 300, 450, 600, 900, 1800)


def queue_status() -> dict[str, int]:
    counts = dict(Generation.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
    return {
        "pending": counts.get(S.QUEUED, 0) + counts.get(S.DISPATCHED, 0),
        "running": counts.get(S.RUNNING, 0),
        "completed": counts.get(S.SUCCEEDED, 0),
        "failed": counts.get(S.FAILED, 0),
        "active_workers": len([w for w in workers(connection()) if w.state != "draining"]),
    }


class WorkshopCollector(Collector):
    """Reads the figures from the database and Redis at each scrape."""

    def collect(self) -> Iterator[Any]:
        conn = connection()
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
        states: dict[str, int] = {"warming": 0, "idle": 0, "busy": 0, "delivering": 0, "draining": 0}
        for w in workers(conn):
            states[w.state] = states.get(w.state, 0) + 1
        for state, n in states.items():
            by_state.add_metric([state], n)
        yield by_state
        desired = GaugeMetricFamily("workshop_desired_workers", "The autoscaler's target", labels=["queue"])
        published = autoscale.published(conn)
        for queue in settings.RQ_QUEUE_NAMES:
            desired.add_metric([queue], published.get(queue, 0))
        yield desired
        spend = spend_for(Workshop.objects.first())
        yield GaugeMetricFamily(
            "workshop_spend", "GPU spend so far (as the panel shows it)", value=float(spend.cost)
        )
        yield self._durations()
        refused = GaugeMetricFamily(
            "workshop_gpu_host_refusals",
            "What GPU hosts sent across their boundary and was refused, by kind (since the database began)",
            labels=["kind"],
        )
        counts = dict(SecurityEvent.objects.values("kind").annotate(n=Sum("count")).values_list("kind", "n"))
        for kind in SecurityEvent.Kind.values:
            refused.add_metric([kind], counts.get(kind, 0))
        yield refused

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
