"""Every live page's socket: the round page (studio), the gallery, the live room and the projector."""

from __future__ import annotations

from django.urls import path

from generations.gallery.consumers import GalleryConsumer, RoundGalleryConsumer
from generations.instructor.consumers import RoomConsumer, ScreenConsumer
from generations.studio.consumers import RoundConsumer

websocket_urlpatterns = [
    path("ws/rounds/<int:round_id>/", RoundConsumer.as_asgi()),
    path("ws/instructor/rounds/<int:round_id>/", RoomConsumer.as_asgi()),
    path("ws/screen/", ScreenConsumer.as_asgi()),
    path("ws/gallery/", GalleryConsumer.as_asgi()),
    path("ws/rounds/<int:round_id>/gallery/", RoundGalleryConsumer.as_asgi()),
]
