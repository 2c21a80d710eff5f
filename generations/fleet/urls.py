from __future__ import annotations

from django.urls import path

from generations.fleet import views

urlpatterns = [
    path("api/queue/status", views.api_queue_status, name="api-queue-status"),
    path("api/workers", views.api_workers, name="api-workers"),
    path("metrics", views.metrics, name="metrics"),
    path("instructor/planner", views.planner, name="planner"),
    path("instructor/fleet", views.fleet_hosts, name="instructor-fleet"),
    path("instructor/fleet/hosts/<int:pk>/revoke", views.fleet_host_revoke, name="instructor-fleet-revoke"),
]
