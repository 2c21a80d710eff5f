"""Tell live pages that something changed. Messages carry ids only: consumers
re-read the database and render, so a dropped message is healed by the next one
or by a reconnect."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def generation_changed(*, owner_id: int, generation_id: int, queue: bool = False) -> None:
    """`queue=True` asks pages to re-render the whole queue (a card appeared or left)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "generation.changed", "id": generation_id, "queue": queue}
    try:
        async_to_sync(layer.group_send)(user_group(owner_id), message)
    except Exception:
        # Live updates are best effort; the database already holds the truth.
        log.exception("could not notify pages of generation %s", generation_id)
