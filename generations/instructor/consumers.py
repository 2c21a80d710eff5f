"""Live pages for instructors only: the live room of a round and the projector (/screen).
Both close the socket for anyone else (4401 anonymous, 4403 a filmmaker)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from generations.instructor.room import room_state
from generations.instructor.spotlight import spotlight_current
from generations.instructor.workshop import workshop_current
from generations.live import groups
from generations.live.threads import on_a_thread
from generations.models import Round

ROOM = "generations/instructor/room.html"
SCREEN = "generations/screen.html"
log = logging.getLogger(__name__)


def _refusal(scope: dict[str, Any]) -> int | None:
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return 4401
    if not user.is_instructor:
        return 4403
    return None


def _refused_or(scope: dict[str, Any], render: Any, *args: Any) -> tuple[int | None, str | None]:
    """(the close code, None) for anyone but an instructor, else (None, what `render` returns): the
    user is read from the session here, on the worker thread (live.auth)."""
    if code := _refusal(scope):
        return code, None
    return None, render(*args)


def render_room(round_id: int) -> str | None:
    rnd = Round.objects.filter(pk=round_id).first()
    if rnd is None:
        return None
    return render_to_string(f"{ROOM}#room-live", room_state(rnd))


class RoomConsumer(AsyncWebsocketConsumer):
    """The live room. It hears of every generation (the conductor's pushes fan out to the room
    group), of the round's state and of the spotlight, and re-renders the whole room from the
    database (a constant number of queries), at most every DEBOUNCE seconds (and, for a room so
    large that a render takes long, never more than a fifth of the time: in a burst the filmmakers'
    own answers come first), and sends it only when it reads differently from what it sent last.
    Heartbeats are not pushed, so it also re-renders every TICK seconds for the workers' ages and
    the running spend."""

    DEBOUNCE = 0.3
    TICK = 5.0

    async def connect(self) -> None:
        self.round_id = int(self.scope["url_route"]["kwargs"]["round_id"])
        code, html = await on_a_thread(_refused_or)(self.scope, render_room, self.round_id)
        if code or html is None:
            await self.close(code=code or 4404)
            return
        self.sent = html
        self.groups_joined = [groups.ROOM_GROUP, groups.round_group(self.round_id), groups.SCREEN_GROUP]
        for group in self.groups_joined:  # one at a time: a burst of handshakes opens fewer connections
            await self.channel_layer.group_add(group, self.channel_name)
        self.pending: asyncio.Task[None] | None = None
        self.dirty, self.took = False, 0.0
        await self.accept()
        await self.send(text_data=html)
        self.ticker = asyncio.create_task(self._tick())

    async def disconnect(self, code: int) -> None:
        for task in (getattr(self, "ticker", None), getattr(self, "pending", None)):
            if task is not None:
                task.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing we act on."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Whatever the groups say (generation.changed, round.changed, spotlight.changed, kinds
        # added later) or the layer (layer.reconnected) means "something changed": coalesce a
        # burst into one render.
        if message["type"].startswith("websocket."):
            await super().dispatch(message)
        else:
            self._soon()

    def _soon(self) -> None:
        self.dirty = True  # a change during a render is rendered after it
        if self.pending is None or self.pending.done():
            self.pending = asyncio.create_task(self._render_soon())

    async def _render_soon(self) -> None:
        while self.dirty:
            await asyncio.sleep(max(self.DEBOUNCE, 4 * self.took))
            self.dirty = False
            await self._push()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            await self._push()

    async def _push(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            html = await on_a_thread(render_room)(self.round_id)
            self.took = loop.time() - start
        except Exception:
            # The next change or tick tries again; a failed render must not end the ticking.
            log.exception("could not render the live room of round %s", self.round_id)
            return
        if html is not None and html != self.sent:
            self.sent = html
            await self.send(text_data=html)


class ScreenConsumer(AsyncWebsocketConsumer):
    """The projector: shows the spotlight, and switches when the instructor picks another."""

    async def connect(self) -> None:
        code, html = await on_a_thread(_refused_or)(self.scope, render_stage)
        if code:
            await self.close(code=code)
            return
        await self.channel_layer.group_add(groups.SCREEN_GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(groups.SCREEN_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing we act on."""

    async def spotlight_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=await on_a_thread(render_stage)())

    layer_reconnected = spotlight_changed  # pushes meanwhile may be lost (live.layer)


def render_stage() -> str:
    context = {"spotlight": spotlight_current(), "workshop": workshop_current()}
    return render_to_string(f"{SCREEN}#stage", context)
