from __future__ import annotations

from django.urls import path

from . import api, views_planner

urlpatterns = [
    path("api/queue/status", api.api_queue_status, name="api-queue-status"),
    path("api/workers", api.api_workers, name="api-workers"),
    path("metrics", api.metrics, name="metrics"),
    path("instructor/planner", views_planner.planner, name="planner"),
]
