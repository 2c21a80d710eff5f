"""Live pages around the panel: filmmakers' pages follow the round's state and show
announcements; the live room and the projector re-render from the database on each change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from generations.instructor import announcements, lifecycle
from generations.instructor import spotlight as instructor_spotlight
from generations.live import groups
from generations.models import Round
from generations.routing import websocket_urlpatterns
from tests.test_instructor import finish, submit

pytestmark = pytest.mark.django_db(transaction=True)
app = URLRouter(websocket_urlpatterns)


def socket(user, path: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, path)
    comm.scope["user"] = user
    return comm


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def test_it_sends_the_rounds_state_and_the_announcements_on_connect(owner, open_round, redis_conn) -> None:
    announcements.announcement_create(text="Coffee is here", by=owner)

    async def scenario() -> None:
        comm = socket(owner, f"/ws/rounds/{open_round.pk}/")
        await comm.connect()
        html = await comm.receive_from(timeout=5)
        assert 'id="round-head"' in html and 'id="submit-state"' in html and "Coffee is here" in html
        await comm.disconnect()

    run(scenario)


def test_it_follows_the_rounds_state_live(owner, open_round, redis_conn) -> None:
    def pause() -> None:
        lifecycle.round_pause(rnd=open_round)
        groups.round_changed(round_id=open_round.pk)

    async def scenario() -> None:
        comm = socket(owner, f"/ws/rounds/{open_round.pk}/")
        await comm.connect()
        await comm.receive_from(timeout=5)
        await sync_to_async(pause)()
        html = await comm.receive_from(timeout=5)
        assert 'data-status="paused"' in html and "disabled" in html and "paused" in html
        await comm.disconnect()

    run(scenario)


def test_it_ignores_another_rounds_changes(owner, open_round, redis_conn) -> None:
    async def scenario() -> None:
        comm = socket(owner, f"/ws/rounds/{open_round.pk}/")
        await comm.connect()
        await comm.receive_from(timeout=5)
        other = await Round.objects.acreate(title="Elsewhere", status=Round.Status.OPEN)
        await sync_to_async(groups.round_changed)(round_id=other.pk)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)


def test_it_shows_an_announcement_at_once(owner, instructor, open_round, redis_conn) -> None:
    def announce() -> None:
        announcements.announcement_create(text="Ten minutes left", by=instructor)
        groups.announcements_changed()

    async def scenario() -> None:
        comm = socket(owner, f"/ws/rounds/{open_round.pk}/")
        await comm.connect()
        await comm.receive_from(timeout=5)
        await sync_to_async(announce)()
        html = await comm.receive_from(timeout=5)
        assert html.strip().startswith('<div id="announcements"') and "Ten minutes left" in html
        await comm.disconnect()

    run(scenario)


def test_it_rerenders_the_live_room_when_a_generation_changes(
    instructor, owner, open_round, template, redis_conn
) -> None:
    def submit_one() -> None:
        g = submit(owner, open_round, template, "a late heron")
        groups.generation_changed(owner_id=owner.pk, generation_id=g.pk, queue=True)

    async def scenario() -> None:
        comm = socket(instructor, f"/ws/instructor/rounds/{open_round.pk}/")
        await comm.connect()
        assert "a late heron" not in await comm.receive_from(timeout=5)
        await sync_to_async(submit_one)()
        assert "a late heron" in await comm.receive_from(timeout=5)
        await comm.disconnect()

    run(scenario)


def test_it_switches_the_screen_to_the_spotlight(instructor, generation, redis_conn) -> None:
    def spotlight() -> None:
        instructor_spotlight.spotlight_set(take=finish(generation))
        groups.spotlight_changed()

    async def scenario() -> None:
        comm = socket(instructor, "/ws/screen/")
        await comm.connect()
        assert "<video" not in await comm.receive_from(timeout=5)
        await sync_to_async(spotlight)()
        html = await comm.receive_from(timeout=5)
        assert "<video" in html and generation.prompt in html
        await comm.disconnect()

    run(scenario)


def test_it_sends_the_room_again_only_when_it_reads_differently(instructor, open_round, redis_conn) -> None:
    async def scenario() -> None:
        comm = socket(instructor, f"/ws/instructor/rounds/{open_round.pk}/")
        await comm.connect()
        await comm.receive_from(timeout=5)
        await sync_to_async(groups.room_changed)()  # nothing it shows changed
        assert await comm.receive_nothing(timeout=1)
        await comm.disconnect()

    run(scenario)
