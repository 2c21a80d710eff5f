from __future__ import annotations

from django.urls import path

from .consumers import RoundConsumer
from .consumers_gallery import GalleryConsumer, RoundGalleryConsumer
from .consumers_instructor import RoomConsumer, ScreenConsumer

websocket_urlpatterns = [
    path("ws/rounds/<int:round_id>/", RoundConsumer.as_asgi()),
    path("ws/instructor/rounds/<int:round_id>/", RoomConsumer.as_asgi()),
    path("ws/screen/", ScreenConsumer.as_asgi()),
]

websocket_urlpatterns += [
    path("ws/gallery/", GalleryConsumer.as_asgi()),
    path("ws/rounds/<int:round_id>/gallery/", RoundGalleryConsumer.as_asgi()),
]
