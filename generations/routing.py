from __future__ import annotations

from django.urls import path

from .consumers import RoundConsumer

websocket_urlpatterns = [
    path("ws/rounds/<int:round_id>/", RoundConsumer.as_asgi()),
]
