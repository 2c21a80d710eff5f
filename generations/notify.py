"""Tell live pages that something changed. Messages carry ids only: consumers
re-read the database and render, so a dropped message is healed by the next one
or by a reconnect."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


# The instructor's live room hears of every generation; filmmakers' pages hear of their round's
# state and of announcements; the projector hears of the spotlight.
ROOM_GROUP = "instructor-room"
ANNOUNCEMENTS_GROUP = "announcements"
SCREEN_GROUP = "screen"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def round_group(round_id: int) -> str:
    return f"round-{round_id}"


def generation_changed(*, owner_id: int, generation_id: int, queue: bool = False) -> None:
    """`queue=True` asks pages to re-render the whole queue (a card appeared or left)."""
    message = {"type": "generation.changed", "id": generation_id, "queue": queue}
    _send(user_group(owner_id), message)
    _send(ROOM_GROUP, message)


def round_changed(*, round_id: int) -> None:
    """The round's status, brief or settings changed: its pages and the live room re-render."""
    _send(round_group(round_id), {"type": "round.changed", "id": round_id})
    _send(ROOM_GROUP, {"type": "room.changed"})


def room_changed() -> None:
    """Something only the live room shows changed (a quota top-up, the workshop's budget)."""
    _send(ROOM_GROUP, {"type": "room.changed"})


def announcements_changed() -> None:
    _send(ANNOUNCEMENTS_GROUP, {"type": "announcements.changed"})


def spotlight_changed() -> None:
    _send(SCREEN_GROUP, {"type": "spotlight.changed"})


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Live updates are best effort; the database already holds the truth.
        log.exception("could not send %s to %s", message.get("type"), group)
