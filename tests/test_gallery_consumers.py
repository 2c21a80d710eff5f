"""Live gallery pages: what each socket is sent, and what it must never be sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from generations.gallery import services as gallery_services
from generations.live import groups
from generations.models import Round
from generations.routing import websocket_urlpatterns
from tests.test_gallery import make_take

pytestmark = pytest.mark.django_db(transaction=True)
app = URLRouter(websocket_urlpatterns)


def socket(user, path: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, path)
    comm.scope["user"] = user
    return comm


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(scenario)()


def test_it_refuses_an_anonymous_gallery_socket(redis_conn) -> None:
    async def scenario() -> None:
        assert not (await socket(AnonymousUser(), "/ws/gallery/").connect())[0]

    run(scenario)


def test_it_sends_my_rounds_on_connect(owner, open_round, redis_conn) -> None:
    take = make_take(owner, open_round)

    async def scenario() -> None:
        comm = socket(owner, f"/ws/gallery/?rounds={open_round.pk}")
        assert (await comm.connect())[0]
        html = await comm.receive_from(timeout=5)
        assert f'id="mine-r{open_round.pk}-tiles"' in html and f'id="tile-{take.pk}"' in html
        await comm.disconnect()

    run(scenario)


def test_it_pushes_a_finished_take_into_its_rounds_section(owner, open_round, redis_conn) -> None:
    async def scenario() -> None:
        comm = socket(owner, "/ws/gallery/")
        assert (await comm.connect())[0]
        take = await sync_to_async(make_take)(owner, open_round, prompt="a heron")
        await sync_to_async(groups.generation_changed)(owner_id=owner.pk, generation_id=take.generation_id)
        html = await comm.receive_from(timeout=5)
        assert (
            f'id="mine-r{open_round.pk}-tiles"' in html
            and f'id="tile-{take.pk}"' in html
            and "a heron" in html
        )
        await comm.disconnect()

    run(scenario)


def test_it_pushes_a_circle_to_every_open_page_of_the_owner(owner, open_round, redis_conn) -> None:
    take = make_take(owner, open_round)

    async def scenario() -> None:
        pages = [socket(owner, "/ws/gallery/"), socket(owner, f"/ws/gallery/?view=compare&takes={take.pk}")]
        for page in pages:
            assert (await page.connect())[0]
        await pages[1].receive_from(timeout=5)  # the compare page's current controls
        await sync_to_async(gallery_services.take_circle)(take=take, circled=True)
        for page in pages:
            html = await page.receive_from(timeout=5)
            assert f'id="actions-{take.pk}" class="g-actions is-circled"' in html
        for page in pages:
            await page.disconnect()

    run(scenario)


def test_it_updates_the_circled_count_of_the_section(owner, open_round, redis_conn) -> None:
    take = make_take(owner, open_round)

    async def scenario() -> None:
        comm = socket(owner, "/ws/gallery/")
        assert (await comm.connect())[0]
        await sync_to_async(gallery_services.take_circle)(take=take, circled=True)
        html = await comm.receive_from(timeout=5)
        assert f'id="mine-r{open_round.pk}-head"' in html and "1 of 3 circled" in html
        await comm.disconnect()

    run(scenario)


def test_it_never_pushes_another_filmmakers_take(owner, other, open_round, redis_conn) -> None:
    take = make_take(owner, open_round, circled=True)

    async def scenario() -> None:
        comm = socket(other, f"/ws/rounds/{open_round.pk}/gallery/?owners={owner.pk}")
        assert (await comm.connect())[0]
        html = await comm.receive_from(timeout=5)
        assert "Not shared yet" in html and f'id="shared-r{open_round.pk}-u{owner.pk}"' in html
        assert f"tile-{take.pk}" not in html and "a lighthouse" not in html
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)


def test_it_pushes_the_shared_gallery_once_the_round_is_shared(owner, other, open_round, redis_conn) -> None:
    take = make_take(owner, open_round, circled=True)

    async def scenario() -> None:
        comm = socket(other, f"/ws/rounds/{open_round.pk}/gallery/")
        assert (await comm.connect())[0]
        await comm.receive_from(timeout=5)
        await sync_to_async(Round.objects.filter(pk=open_round.pk).update)(gallery_shared=True)
        await sync_to_async(groups.round_gallery_changed)(round_id=open_round.pk)
        html = await comm.receive_from(timeout=5)
        assert html.lstrip().startswith('<div id="shared-body">') and f'id="tile-{take.pk}"' in html
        assert "by <strong" in html and "Add a note" not in html
        await comm.disconnect()

    run(scenario)


def test_it_ignores_what_other_pages_hear_on_the_same_group(owner, open_round, redis_conn) -> None:
    take = make_take(owner, open_round)

    async def scenario() -> None:
        comm = socket(owner, "/ws/gallery/")
        assert (await comm.connect())[0]
        await get_channel_layer().group_send(groups.user_group(owner.pk), {"type": "something.else"})
        await sync_to_async(gallery_services.take_note_set)(take=take, note="still here")
        assert 'value="still here"' in await comm.receive_from(timeout=5)
        await comm.disconnect()

    run(scenario)


def test_it_sends_nothing_to_a_page_filtered_to_another_round(owner, open_round, redis_conn) -> None:
    take = make_take(owner, open_round)

    async def scenario() -> None:
        comm = socket(owner, "/ws/gallery/?round=999999")
        assert (await comm.connect())[0]
        await sync_to_async(groups.take_changed)(take_id=take.pk, owner_id=owner.pk, round_id=open_round.pk)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)
