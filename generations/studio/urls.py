from __future__ import annotations

from django.urls import path

from generations.studio import views

urlpatterns = [
    path("", views.home, name="home"),
    path("rounds/<int:pk>/", views.round_detail, name="round"),
    path("rounds/<int:pk>/generate", views.generation_submit, name="generation-submit"),
    path("generations/<int:pk>/card", views.generation_card, name="generation-card"),
    path("generations/<int:pk>/preview", views.generation_preview, name="generation-preview"),
    path("generations/<int:pk>/cancel", views.generation_cancel, name="generation-cancel"),
    path("generations/<int:pk>/retry", views.generation_retry, name="generation-retry"),
    path("takes/<int:pk>/file", views.take_file, name="take-file"),
    path("takes/<int:pk>/poster", views.take_poster, name="take-poster"),
    path("takes/<int:pk>/viewer", views.take_viewer, name="take-viewer"),
]
