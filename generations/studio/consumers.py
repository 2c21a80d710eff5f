"""Live pages. The consumer checks access on connect, sends the current state, and on every
notification re-reads the database and sends full fragments (never deltas).

Asynchronous: its database reads and renders run on a worker thread of their own
(live.threads.on_a_thread), never on the event loop and never on the one
thread that synchronous views share, so a slow socket holds up no other. Each render reads a
constant number of rows whatever the queue's length (positions and ETAs come from the line the
conductor published). Notifications that arrive while a render runs are merged into the next one:
a burst costs each socket a render or two, not one per message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404
from django.template.loader import render_to_string

from accounts.models import User
from generations.instructor.announcements import announcements_active
from generations.instructor.briefs import brief_images
from generations.live import groups
from generations.live.threads import on_a_thread
from generations.models import Generation, Round
from generations.queue.access import rounds_visible_to
from generations.queue.cards import queue_context, with_estimates
from generations.queue.selectors import NOT_SHOWN, finished_of, waiting_of

PAGE = "generations/round.html"
# static/js/app.js sends PING and swallows PONG (it is no fragment to swap).
PING, PONG = "ping", "pong"
log = logging.getLogger(__name__)


def _round_for(user: User, pk: int) -> Round:
    """round_for_user without the round's templates (the socket never shows them): one query."""
    rnd = rounds_visible_to(user).filter(pk=pk).first()
    if rnd is None:
        raise Http404("No such round")
    return rnd


def _viewer_and_round(user: User | None, round_id: int) -> tuple[User, Round] | int:
    """Who connects (read from the session here, live.auth) and the round they may see, or the
    close code: 4401 anonymous, 4404 a round they may not see."""
    if user is None or not user.is_authenticated:
        return 4401
    try:
        return user, _round_for(user, round_id)
    except Http404:
        return 4404


@dataclass
class Wanted:
    """What the next push re-renders."""

    head: bool = False  # the round's state and brief (re-read)
    banner: bool = False  # the announcements
    queue: bool = False  # the whole "my queue": cards, positions, ETAs, quota
    takes: bool = False
    cards: set[int] = field(default_factory=set)  # single cards (re-rendered alone unless `queue`)
    moved: bool = False  # only positions and ETAs moved: the whole queue, but it may wait a little

    def __bool__(self) -> bool:
        return self.moved or self.urgent

    @property
    def urgent(self) -> bool:
        return self.head or self.banner or self.queue or self.takes or bool(self.cards)


class RoundConsumer(AsyncWebsocketConsumer):
    """One filmmaker's view of one round: their queue and their takes, the round's state (it
    follows the instructor's open/pause/close) and the announcements."""

    # Positions and ETAs that moved (the conductor's line) re-render the queue at most this often:
    # in a burst every dispatch moves everyone, and the burst's own answers come first.
    MOVED_EVERY = 1.0
    # When the queue (or a card of it) this page shows was read from the database: a queue
    # rendered elsewhere from an older read is not sent over it (generation_changed).
    queue_read_at = 0.0

    async def connect(self) -> None:
        round_id = int(self.scope["url_route"]["kwargs"]["round_id"])
        found = await on_a_thread(_viewer_and_round, door=True)(self.scope.get("user"), round_id)
        if isinstance(found, int):
            await self.close(code=found)
            return
        self.user, self.round = found
        self.wanted = Wanted()
        self.pushing: asyncio.Task[None] | None = None
        self.nudged = asyncio.Event()  # something that must not wait arrived
        self.queue_sent_at = -self.MOVED_EVERY
        self.groups_joined = [
            groups.user_group(self.user.pk),
            groups.round_group(self.round.pk),
            groups.ANNOUNCEMENTS_GROUP,
        ]
        for group in self.groups_joined:  # one at a time: a burst of handshakes opens fewer connections
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # A reconnect may have missed messages: send everything as it is now.
        self._want_everything()

    async def disconnect(self, code: int) -> None:
        if (task := getattr(self, "pushing", None)) is not None:
            task.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page's heartbeat: it pings every few seconds and calls the socket dead (and
        reconnects) when no answer comes; nothing else it sends is acted on. Answered on the event
        loop: no database, so even a busy process says it is alive at once."""
        if text_data == PING:
            await self.send(text_data=PONG)

    # --- What the groups say ----------------------------------------------------------------

    async def generation_changed(self, event: dict[str, Any]) -> None:
        generation_id = int(event.get("id") or 0)
        if not generation_id:
            self._want(moved=True)  # positions and ETAs moved
            return
        if self._sends_as_is(event):
            # A submit answer's queue (groups.queue_rendered), read after anything this page shows,
            # and nothing else waits or renders here: sent as it is.
            self.queue_read_at = float(event["read_at"])
            self.queue_sent_at = asyncio.get_running_loop().time()
            await self.send(text_data=str(event["html"]))
            return
        # One of my cards changed; `queue`: it appeared or left (and the quota changed): the whole queue.
        self._want(queue=bool(event.get("queue")), cards={generation_id})

    def _sends_as_is(self, event: dict[str, Any]) -> bool:
        idle = (self.pushing is None or self.pushing.done()) and not self.wanted
        return (
            idle
            and bool(event.get("html"))
            and event.get("round") == self.round.pk
            and float(event.get("read_at") or 0) >= self.queue_read_at
        )

    async def round_changed(self, event: dict[str, Any]) -> None:
        self._want(head=True)

    async def announcements_changed(self, event: dict[str, Any]) -> None:
        self._want(banner=True)

    async def layer_reconnected(self, event: dict[str, Any]) -> None:
        """This process's subscription came back (live.layer): pushes meanwhile may be lost."""
        self._want_everything()

    # --- Pushing ----------------------------------------------------------------------------

    def _want_everything(self) -> None:
        self._want(head=True, banner=True, queue=True, takes=True)

    def _want(
        self,
        *,
        head: bool = False,
        banner: bool = False,
        queue: bool = False,
        takes: bool = False,
        cards: set[int] | None = None,
        moved: bool = False,
    ) -> None:
        w = self.wanted
        w.head, w.banner, w.takes = w.head or head, w.banner or banner, w.takes or takes
        w.queue, w.moved = w.queue or queue, w.moved or moved
        w.cards |= cards or set()
        if w.urgent:
            self.nudged.set()
        if self.pushing is None or self.pushing.done():
            self.pushing = asyncio.create_task(self._push())

    async def _push(self) -> None:
        # Whatever arrives while a render runs waits for the next render, which covers all of it.
        loop = asyncio.get_running_loop()
        while self.wanted:
            wait = self.queue_sent_at + self.MOVED_EVERY - loop.time()
            if not self.wanted.urgent and wait > 0:
                self.nudged.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.nudged.wait(), wait)
                continue
            wanted, self.wanted = self.wanted, Wanted()
            if wanted.moved or wanted.queue:  # the whole queue shows positions and ETAs too
                self.queue_sent_at = loop.time()
            try:
                html = await on_a_thread(self._render)(wanted)
            except Exception:
                log.exception("could not render round %s for user %s", self.round.pk, self.user.pk)
                continue
            if html:
                await self.send(text_data=html)

    def _render(self, wanted: Wanted) -> str:
        """The fragments `wanted` asks for, from the database as it is now (on a worker thread)."""
        parts = []
        if wanted.head:
            try:
                self.round = _round_for(self.user, self.round.pk)
            except Http404:
                wanted.head = False  # no longer visible: leave the page as it is
        if wanted.head:
            parts.append(self._head_html())
        if wanted.banner:
            parts.append(render_to_string(f"{PAGE}#announcements", {"announcements": announcements_active()}))
        cards: list[Generation] = []
        moved: list[Generation] = []
        if wanted.queue or wanted.cards or wanted.moved:
            self.queue_read_at = max(self.queue_read_at, time.time())  # before the reads
        if not wanted.queue and wanted.cards:
            mine = Generation.objects.filter(pk__in=wanted.cards, owner=self.user, round=self.round)
            cards = list(mine.select_related("template").defer(*NOT_SHOWN))  # a running card's ETA reads it
            # A finished card moves from the queue's grid to the takes': both grids, whole.
            wanted.queue = any(g.status in Generation.TERMINAL for g in cards)
            wanted.takes = wanted.takes or wanted.queue
        if not wanted.queue and wanted.moved:
            # Only positions and ETAs moved: each waiting card's two lines that show them, not the
            # cards (the burst's most frequent push: every waiting page, after every dispatch pass).
            moved = [g for g in waiting_of(self.user, self.round) if g.pk not in wanted.cards]
        if wanted.queue:
            context = queue_context(self.user, self.round)
            parts.append(render_to_string(f"{PAGE}#my-queue", context))
        elif cards or moved:
            with_estimates(cards + moved)  # the line read once for both
            parts += [render_to_string(f"{PAGE}#job-card", {"g": g}) for g in cards]
            if moved:
                parts.append(render_to_string(f"{PAGE}#card-moved", {"generations": moved, "line_oob": True}))
        if wanted.takes:
            context = {"finished": finished_of(self.user, self.round), "round": self.round}
            parts.append(render_to_string(f"{PAGE}#my-takes", context))
        return "".join(parts)

    def _head_html(self) -> str:
        """The round's title, state and brief, and the submit button that follows its state."""
        context = {"round": self.round, "brief_images": brief_images(self.round)}
        head = render_to_string(f"{PAGE}#round-head", context)
        return head + render_to_string(f"{PAGE}#submit-state", context)
