from __future__ import annotations

from django.urls import path

from generations.dispatch import views

urlpatterns = [
    path("api/uploads/<str:token>/<str:filename>", views.take_upload, name="take-upload"),
    path("api/upload-check", views.take_upload_check, name="take-upload-check"),
]
