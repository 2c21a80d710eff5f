from __future__ import annotations

from django.urls import path

from generations.dispatch import views

urlpatterns = [
    path("api/uploads/<str:token>/<str:filename>", views.take_upload, name="take-upload"),
]
