"""Live pages. The consumer checks access on connect, sends the current state, and on
every notification re-reads the database and sends full fragments (never deltas)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.http import Http404
from django.template.loader import render_to_string

from generations.instructor.announcements import announcements_active
from generations.instructor.briefs import brief_images
from generations.live import groups
from generations.queue.access import generation_for_user, round_for_user
from generations.queue.cards import queue_context, with_estimates
from generations.queue.selectors import finished_of

PAGE = "generations/round.html"
# static/js/app.js sends PING and swallows PONG (it is no fragment to swap).
PING, PONG = "ping", "pong"


class RoundConsumer(WebsocketConsumer):
    """One filmmaker's view of one round: their queue and their takes, the round's state (it
    follows the instructor's open/pause/close) and the announcements."""

    def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            self.close(code=4401)
            return
        try:
            self.round = round_for_user(user, int(self.scope["url_route"]["kwargs"]["round_id"]))
        except Http404:
            self.close(code=4404)
            return
        self.user = user
        self.groups_joined = [
            groups.user_group(user.pk),
            groups.round_group(self.round.pk),
            groups.ANNOUNCEMENTS_GROUP,
        ]
        for group in self.groups_joined:
            async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
        self.accept()
        # A reconnect may have missed messages: send everything as it is now.
        self.send_state(queue=True, takes=True, head=True)

    def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page's heartbeat: it pings every few seconds and calls the socket dead (and
        reconnects) when no answer comes; nothing else it sends is acted on."""
        if text_data == PING:
            self.send(text_data=PONG)

    def generation_changed(self, event: dict[str, Any]) -> None:
        if event.get("queue") and not event.get("id"):
            self.send_state(queue=True, takes=False)  # positions and ETAs moved
            return
        try:
            generation = generation_for_user(self.user, int(event["id"]))
        except Http404:
            return
        if generation.round_id != self.round.pk or generation.owner_id != self.user.pk:
            return
        if event.get("queue") or not generation.is_active:
            # A finished card moves from the queue's grid to the takes'.
            self.send_state(queue=True, takes=not generation.is_active)
            return
        html = render_to_string(f"{PAGE}#job-card", {"g": with_estimates([generation])[0]})
        self.send(text_data=html)

    def round_changed(self, event: dict[str, Any]) -> None:
        try:
            self.round = round_for_user(self.user, self.round.pk)
        except Http404:
            return
        self.send(text_data=self._head_html())

    def announcements_changed(self, event: dict[str, Any]) -> None:
        self.send(text_data=self._banner_html())

    def send_state(self, *, queue: bool, takes: bool, head: bool = False) -> None:
        parts = [self._head_html(), self._banner_html()] if head else []
        if queue:
            context = queue_context(self.user, self.round)
            parts.append(render_to_string(f"{PAGE}#my-queue", context))
        if takes:
            parts.append(self._takes_html())
        self.send(text_data="".join(parts))

    def _head_html(self) -> str:
        """The round's title, state and brief, and the submit button that follows its state."""
        context = {"round": self.round, "brief_images": brief_images(self.round)}
        head = render_to_string(f"{PAGE}#round-head", context)
        return head + render_to_string(f"{PAGE}#submit-state", context)

    def _banner_html(self) -> str:
        return render_to_string(f"{PAGE}#announcements", {"announcements": announcements_active()})

    def _takes_html(self) -> str:
        context = {"finished": finished_of(self.user, self.round), "round": self.round}
        return render_to_string(f"{PAGE}#my-takes", context)
