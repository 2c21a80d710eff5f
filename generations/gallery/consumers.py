"""Live gallery pages. As on the round page: check access on connect, send the current state,
and on every message re-read the database and send whole fragments; messages carry ids only.
What a socket may show is decided again for every message (a round can stop being shared)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync
from channels.consumer import get_handler_name
from channels.generic.websocket import WebsocketConsumer
from django.http import Http404
from django.template.loader import render_to_string

from accounts.models import User
from generations.gallery.selectors import (
    Filters,
    OwnerSection,
    SharedPage,
    my_section,
    owner_section,
    shared_gallery,
)
from generations.live import groups
from generations.live.threads import on_a_thread
from generations.models import Generation
from generations.queue.access import current_takes, is_shared, round_for_user, sees_everything
from workshop.inputs import int_or_none

MINE = "generations/gallery/mine.html"
SHARED = "generations/gallery/shared.html"
TILES = "generations/gallery/tiles.html"


def _ids(raw: list[str] | None) -> list[int]:
    parts = (raw or [""])[0].split(",")
    return [n for n in map(int_or_none, parts) if n is not None][:200]


class _GalleryConsumer(WebsocketConsumer):
    groups_joined: list[str]

    # Each message is handled on a worker thread (not the one thread that synchronous views and
    # thread-sensitive code share), so a slow gallery render holds up no other socket.
    @on_a_thread
    def dispatch(self, message: dict[str, Any]) -> None:
        # The groups we join are shared with other pages, which hear of more kinds of change
        # than we render; ignore those instead of failing the socket.
        handler = getattr(self, get_handler_name(message), None)
        if handler:
            handler(message)

    def _join(self, *groups: str) -> None:
        self.groups_joined = list(groups)
        for group in groups:
            async_to_sync(self.channel_layer.group_add)(group, self.channel_name)

    def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page sends nothing we act on."""

    def _user(self) -> User | None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            self.close(code=4401)
            return None
        return user

    def _query(self) -> dict[str, list[str]]:
        return parse_qs(self.scope.get("query_string", b"").decode())


class GalleryConsumer(_GalleryConsumer):
    """My gallery (`?rounds=…` with the page's filters) or a compare page (`?view=compare&takes=…`)."""

    def connect(self) -> None:
        user = self._user()
        if user is None:
            return
        self.user = user
        query = self._query()
        self.filters = Filters.from_query({k: v[0] for k, v in query.items()})
        self.compare = query.get("view") == ["compare"]
        self.rounds, self.takes = _ids(query.get("rounds")), _ids(query.get("takes"))
        # Finished generations are announced on the round page's group; circles and notes on ours.
        self._join(groups.user_group(user.pk), groups.gallery_user_group(user.pk))
        self.accept()
        self.send_state()

    def send_state(self) -> None:
        if self.compare:
            takes = current_takes().filter(pk__in=self.takes, generation__owner=self.user)
            self._send([self._actions(t) for t in takes])
        else:
            self._send([self._section(rid) for rid in self.rounds])

    def layer_reconnected(self, event: dict[str, Any]) -> None:
        """Pushes while this process's subscription was down may be lost (live.layer)."""
        self.send_state()

    def generation_changed(self, event: dict[str, Any]) -> None:
        """A generation finished: its round's section, with the new take, as it is now."""
        if self.compare or not event.get("id"):
            return
        round_id = (
            Generation.objects.filter(pk=event["id"], owner=self.user, status=Generation.Status.SUCCEEDED)
            .values_list("round_id", flat=True)
            .first()
        )
        if round_id is not None and self.filters.round_id in (None, round_id):
            self._send([self._section(round_id)])

    def gallery_take(self, event: dict[str, Any]) -> None:
        """One of my takes was circled, uncircled or noted (on this page or another)."""
        take = current_takes().filter(pk=event.get("id"), generation__owner=self.user).first()
        if take is None:
            return
        if self.compare:
            if take.pk in self.takes:
                self._send([self._actions(take)])
            return
        rid = take.generation.round_id
        if self.filters.round_id not in (None, rid):
            return
        if self.filters.circled:  # the take joins or leaves the section
            self._send([self._section(rid)])
            return
        section = my_section(self.user, rid, self.filters, takes=False)
        head = render_to_string(f"{MINE}#section-head", {"s": section}) if section else ""
        self._send([self._actions(take), head])

    def _section(self, round_id: int) -> str:
        section = my_section(self.user, round_id, self.filters)
        if section is None:
            return ""
        context = {"s": section, "me": self.user, "filters": self.filters}
        return render_to_string(f"{MINE}#section-head", context) + render_to_string(
            f"{MINE}#section-tiles", context
        )

    def _actions(self, take: Any) -> str:
        return render_to_string(f"{TILES}#actions", {"t": take, "me": self.user})

    def _send(self, parts: list[str]) -> None:
        html = "".join(parts)
        if html:
            self.send(text_data=html)


class RoundGalleryConsumer(_GalleryConsumer):
    """A round's shared gallery (`?owners=…`: the filmmakers on the page's first screen)."""

    def connect(self) -> None:
        user = self._user()
        if user is None:
            return
        try:
            self.round = round_for_user(user, int(self.scope["url_route"]["kwargs"]["round_id"]))
        except Http404:
            self.close(code=4404)
            return
        self.user = user
        self.owners = _ids(self._query().get("owners"))
        # The round's own group says when it changes state: a closed round's gallery becomes shared.
        self._join(groups.gallery_round_group(self.round.pk), groups.round_group(self.round.pk))
        self.accept()
        self._send_owners(self.owners, connecting=True)

    def gallery_take(self, event: dict[str, Any]) -> None:
        if self._refresh():
            self._send_owners([int(event.get("owner") or 0)])

    def gallery_round(self, event: dict[str, Any]) -> None:
        """Shared or unshared: everything on the first screen may change."""
        if self._refresh():
            page = shared_gallery(self.user, self.round)
            context = {"page": page, "round": self.round, "me": self.user}
            self.send(text_data=render_to_string(f"{SHARED}#shared-body", context))

    round_changed = gallery_round
    layer_reconnected = gallery_round  # pushes meanwhile may be lost (live.layer)

    def _refresh(self) -> bool:
        """Re-read the round: whether it is shared is decided now, not when the page opened."""
        try:
            self.round = round_for_user(self.user, self.round.pk)
        except Http404:
            self.close(code=4404)
            return False
        return True

    def _send_owners(self, owner_ids: list[int], *, connecting: bool = False) -> None:
        parts = []
        if connecting:
            shared = is_shared(self.round)
            everyone = shared or sees_everything(self.user)
            page = SharedPage(self.round, shared, everyone, [], None)
            parts.append(render_to_string(f"{SHARED}#shared-status", {"page": page, "me": self.user}))
        for owner_id in owner_ids:
            section = owner_section(self.user, self.round, owner_id)
            if section is None and not connecting:
                continue
            if section is None:
                # No longer visible since the page was made: an empty section wipes what it shows.
                section = OwnerSection(self.round, User(pk=owner_id), [])
            parts.append(render_to_string(f"{SHARED}#owner-section", {"s": section, "me": self.user}))
        if parts:
            self.send(text_data="".join(parts))
