"""Every page of the app, by capability: each sub-package keeps its own URLs."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("generations.studio.urls")),
    path("", include("generations.dispatch.urls")),
    path("", include("generations.fleet.urls")),
    path("", include("generations.instructor.urls")),
    path("", include("generations.gallery.urls")),
]
