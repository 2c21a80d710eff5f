"""Every group of the channel layer, and every message sent to one.

Senders call these after a change; each message is sent once the surrounding transaction commits
(at once outside one), so a page never re-reads a change that is not there yet or was rolled back.
Messages carry ids only: the consumers re-read the database and render. One exception: a submit
answer's queue (queue_rendered), sent as it is to the owner's round pages that read nothing later."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

# The instructor's live room hears of every generation; filmmakers' pages hear of their round's
# state and of announcements; the projector hears of the spotlight.
ROOM_GROUP = "instructor-room"
ANNOUNCEMENTS_GROUP = "announcements"
SCREEN_GROUP = "screen"

# A send that fails is tried again: at once (a dead pooled connection), then while Redis restarts.
SEND_RETRY_DELAYS_S = (0.0, 0.5, 1.0)
SEND_TRIES = len(SEND_RETRY_DELAYS_S) + 1


def user_group(user_id: int) -> str:
    """A filmmaker's round pages (and gallery pages, which show finished generations)."""
    return f"user-{user_id}"


def round_group(round_id: int) -> str:
    """Everyone following a round's state: its round pages, its live room, its shared gallery."""
    return f"round-{round_id}"


def gallery_user_group(user_id: int) -> str:
    """A filmmaker's gallery pages: circles and notes of their takes."""
    return f"gallery-user-{user_id}"


def gallery_round_group(round_id: int) -> str:
    """A round's shared gallery pages."""
    return f"gallery-round-{round_id}"


# --- What changed ----------------------------------------------------------------------------


def generation_changed(
    *, owner_id: int, generation_id: int, queue: bool = False, owner_pages: bool = True
) -> None:
    """`queue=True` asks pages to re-render the whole queue (a card appeared or left).
    `owner_pages=False`: the live room only; the caller tells the owner's pages (queue_rendered)."""
    message = {"type": "generation.changed", "id": generation_id, "queue": queue}
    if owner_pages:
        _send(user_group(owner_id), message)
    _send(ROOM_GROUP, message)


def queue_rendered(*, owner_id: int, round_id: int, generation_id: int, html: str, read_at: float) -> None:
    """A submit answer's "my queue" of the round, rendered from what the database held at `read_at`
    (after the submission committed), for the owner's round pages: each sends it as it is instead of
    rendering it again. A page that read the database later than `read_at`, or is rendering, renders
    the queue itself instead (studio.consumers). Messages carry ids only, but for this: it is the
    burst's one push per filmmaker, and it needs no render."""
    message = {
        "type": "generation.changed",
        "id": generation_id,
        "queue": True,
        "round": round_id,
        "html": html,
        "read_at": read_at,
    }
    _send(user_group(owner_id), message)


def queue_moved(*, owner_ids: set[int]) -> None:
    """Positions and ETAs moved for these filmmakers (a dispatch pass, a top-up): one hand-over to
    the event loop for all of them (the conductor tells twenty at once after a burst's pass)."""
    message = {"type": "generation.changed", "id": 0, "queue": True}
    _send_all([(user_group(owner_id), message) for owner_id in sorted(owner_ids)])


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


def take_changed(*, take_id: int, owner_id: int, round_id: int) -> None:
    """A take was circled, uncircled or noted: its owner's galleries and its round's gallery."""
    message = {"type": "gallery.take", "id": take_id, "owner": owner_id, "round": round_id}
    _send(gallery_user_group(owner_id), message)
    _send(gallery_round_group(round_id), message)


def round_gallery_changed(*, round_id: int) -> None:
    """The round's gallery was shared or unshared (or the round closed)."""
    _send(gallery_round_group(round_id), {"type": "gallery.round", "round": round_id})


def _send(group: str, message: dict[str, Any]) -> None:
    _send_all([(group, message)])


def _send_all(items: list[tuple[str, dict[str, Any]]]) -> None:
    if items:
        transaction.on_commit(lambda: _send_or_batch(items))


_batch = threading.local()


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Messages sent inside go out together when it ends, each once: one hand-over to the event loop
    instead of one per message (the conductor's pass over a batch of events or a dispatch pass,
    where every progress event and every moved queue sends to a page and the live room)."""
    if getattr(_batch, "items", None) is not None:
        yield  # nested: the outer one sends
        return
    _batch.items = []
    try:
        yield
    finally:
        items, _batch.items = _batch.items, None
        # The same message twice says nothing more (pages re-read the database); it goes out even
        # after an error, since what it tells of was committed.
        unique = list({(group, json.dumps(m, sort_keys=True)): (group, m) for group, m in items}.values())
        if unique:
            _send_all_now(unique)


def _send_or_batch(items: list[tuple[str, dict[str, Any]]]) -> None:
    batch = getattr(_batch, "items", None)
    if batch is not None:
        batch.extend(items)
    else:
        _send_all_now(items)


def _send_now(group: str, message: dict[str, Any]) -> None:
    _send_all_now([(group, message)])


def _send_all_now(items: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _serving_loop()
    if loop is not None:
        # On a web process's request or socket thread: the event loop sends it, and the answer to
        # a click does not wait for Redis (in a burst the loop is busy: 50 ms a send, measured).
        asyncio.run_coroutine_threadsafe(_deliver(layer, items), loop)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(_deliver)(layer, items)
        return
    # Called on a thread that runs an event loop of its own (a script or test driving Playwright's
    # sync API, say): async_to_sync refuses to block it, so the send runs on a thread of its own.
    thread = threading.Thread(target=async_to_sync(_deliver), args=(layer, items), name="live-send")
    thread.start()
    thread.join()


async def _deliver(layer: Any, items: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in items:
        await _send_with_retries(layer, group, message)


async def _send_with_retries(layer: Any, group: str, message: dict[str, Any]) -> None:
    for retry in range(SEND_TRIES):
        try:
            await layer.group_send(group, message)
            return
        except Exception as exc:
            if retry + 1 < SEND_TRIES:
                # After a Redis restart the layer's pooled connection is dead: the first use fails and
                # drops it, and the next goes out on a fresh one. Not losing this push matters: a page
                # shows the truth only on the push after.
                log.info("send of %s to %s failed (%s); trying again", message.get("type"), group, exc)
                await asyncio.sleep(SEND_RETRY_DELAYS_S[retry])
                continue
            # Live updates are best effort; the database already holds the truth.
            log.exception("could not send %s to %s", message.get("type"), group)


def _serving_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop this thread works for (asgiref notes it on every thread it hands work to)."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    return loop
