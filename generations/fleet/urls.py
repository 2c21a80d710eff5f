from __future__ import annotations

from django.urls import path

from generations.fleet import views

urlpatterns = [
    path("api/queue/status", views.api_queue_status, name="api-queue-status"),
    path("api/workers", views.api_workers, name="api-workers"),
    path("metrics", views.metrics, name="metrics"),
    path("instructor/planner", views.planner, name="planner"),
]
