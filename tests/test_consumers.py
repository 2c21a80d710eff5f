from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generations.dispatch import attempts
from generations.live import groups
from generations.models import Generation
from generations.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)
app = URLRouter(websocket_urlpatterns)


def page(user, round_id: int) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, f"/ws/rounds/{round_id}/")
    comm.scope["user"] = user
    return comm


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    # One event loop for the whole conversation: the consumer task lives in it.
    async_to_sync(scenario)()


def test_it_refuses_an_anonymous_socket(open_round, redis_conn) -> None:
    async def scenario() -> None:
        connected, _ = await page(AnonymousUser(), open_round.pk).connect()
        assert not connected

    run(scenario)


def test_it_sends_the_current_state_on_connect(owner, generation, redis_conn) -> None:
    async def scenario() -> None:
        comm = page(owner, generation.round_id)
        assert (await comm.connect())[0]
        html = await comm.receive_from(timeout=5)
        assert 'id="my-queue"' in html and f'id="gen-{generation.pk}"' in html and 'id="my-takes"' in html
        await comm.disconnect()

    run(scenario)


def test_it_never_shows_another_filmmakers_generation(other, generation, redis_conn) -> None:
    async def scenario() -> None:
        comm = page(other, generation.round_id)
        await comm.connect()
        assert f"gen-{generation.pk}" not in await comm.receive_from(timeout=5)
        await sync_to_async(groups.generation_changed)(
            owner_id=generation.owner_id, generation_id=generation.pk
        )
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()

    run(scenario)


def test_it_pushes_the_card_rendered_from_the_database(owner, generation, redis_conn) -> None:
    def move() -> None:
        attempts.generation_dispatch(generation=generation)
        attempts.event_apply(
            {"type": "progress", "generation_id": generation.pk, "attempt": 1, "percent": 42}
        )
        groups.generation_changed(owner_id=generation.owner_id, generation_id=generation.pk)

    async def scenario() -> None:
        comm = page(owner, generation.round_id)
        await comm.connect()
        await comm.receive_from(timeout=5)
        await sync_to_async(move)()
        html = await comm.receive_from(timeout=5)
        assert html.strip().startswith(f'<article id="gen-{generation.pk}"') and "42%" in html
        await comm.disconnect()

    run(scenario)


def test_it_refuses_a_socket_from_a_foreign_origin(owner, generation, redis_conn) -> None:
    from workshop.asgi import application

    async def scenario() -> None:
        comm = WebsocketCommunicator(
            application, f"/ws/rounds/{generation.round_id}/", headers=[(b"origin", b"http://evil.example")]
        )
        comm.scope["user"] = owner
        connected, _ = await comm.connect()
        assert not connected

    run(scenario)


def test_it_knows_the_filmmaker_from_the_session_cookie(owner, generation, redis_conn) -> None:
    from tests.test_streaming import session_for
    from workshop.asgi import application

    cookie = f"sessionid={session_for(owner)}".encode()

    async def scenario() -> None:
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
        comm = WebsocketCommunicator(application, f"/ws/rounds/{generation.round_id}/", headers=headers)
        assert (await comm.connect())[0]
        assert f'id="gen-{generation.pk}"' in await comm.receive_from(timeout=5)
        await comm.disconnect()

    run(scenario)


def state_queries(owner, rnd, redis_conn) -> int:
    from generations.queue.snapshot import line_publish
    from generations.studio.consumers import RoundConsumer, Wanted

    line_publish(redis_conn)  # as the conductor keeps it
    consumer = RoundConsumer()
    consumer.user, consumer.round = owner, rnd
    with CaptureQueriesContext(connection) as queries:
        html = consumer._render(Wanted(head=True, banner=True, queue=True, takes=True))
    assert 'id="my-queue"' in html and 'id="my-takes"' in html
    return len(queries)


def test_it_sends_the_state_in_the_same_number_of_queries_however_long_the_line(
    owner, other, open_round, template, redis_conn
) -> None:
    from tests.test_eta import submit

    submit(owner, open_round, template), submit(other, open_round, template)
    short = state_queries(owner, open_round, redis_conn)
    for _ in range(12):  # the round's quota is 15
        submit(other, open_round, template)
    assert state_queries(owner, open_round, redis_conn) == short


def test_it_merges_what_arrives_during_a_render_into_the_next(owner, open_round) -> None:
    from generations.studio.consumers import RoundConsumer, Wanted

    renders: list[Wanted] = []

    async def scenario() -> None:
        consumer = RoundConsumer()
        consumer.user, consumer.round, consumer.wanted, consumer.pushing = owner, open_round, Wanted(), None
        consumer.nudged, consumer.queue_sent_at = asyncio.Event(), -1.0
        consumer._render = lambda wanted: renders.append(wanted) or "html"  # type: ignore[method-assign]
        sent: list[str] = []
        consumer.send = lambda text_data: sent.append(text_data) or asyncio.sleep(0)  # type: ignore[method-assign]
        consumer._want(cards={1})
        consumer._want(queue=True, cards={2})
        consumer._want(moved=True)
        consumer._want(banner=True)
        await consumer.pushing
        assert sent == ["html"]
        # Positions that move again right after wait (at most MOVED_EVERY), and merge meanwhile.
        started = asyncio.get_running_loop().time()
        consumer._want(moved=True)
        consumer._want(moved=True)
        await consumer.pushing
        assert asyncio.get_running_loop().time() - started >= 0.9 * consumer.MOVED_EVERY

    run(scenario)
    assert renders == [Wanted(banner=True, queue=True, cards={1, 2}, moved=True), Wanted(moved=True)]


def test_it_pushes_moved_positions_as_the_waiting_cards_lines_alone(owner, generation, redis_conn) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from generations.queue.snapshot import line_publish

    async def scenario() -> None:
        comm = page(owner, generation.round_id)
        await comm.connect()
        await comm.receive_from(timeout=5)
        await sync_to_async(line_publish)(redis_conn)
        await sync_to_async(groups.queue_moved)(owner_ids={owner.pk})
        html = await comm.receive_from(timeout=5)
        place = f'<div class="tile-wait" id="gen-{generation.pk}-place" hx-swap-oob="true">'
        assert html.startswith(place + '<span class="tile-big">1</span>')
        assert f'<div class="tile-line" id="gen-{generation.pk}-line" hx-swap-oob="true">' in html
        assert ">next · " in html
        assert "<article" not in html and 'id="my-queue"' not in html  # not the card, not the queue
        await comm.disconnect()

    run(scenario)

    # The lines read one query's columns: nothing they show is deferred (which would cost a query each).
    from generations.studio.consumers import RoundConsumer, Wanted

    consumer = RoundConsumer()
    consumer.user, consumer.round = owner, generation.round
    with CaptureQueriesContext(connection) as queries:
        html = consumer._render(Wanted(moved=True))
    assert len(queries) == 1 and f'id="gen-{generation.pk}-line"' in html


def test_it_does_not_keep_a_request_waiting_while_the_event_loop_sends(monkeypatch) -> None:
    import time

    sent: list[str] = []

    class SlowLayer:
        async def group_send(self, group: str, message: dict) -> None:
            await asyncio.sleep(0.5)  # a busy event loop, a slow Redis
            sent.append(group)

    monkeypatch.setattr(groups, "get_channel_layer", lambda: SlowLayer())

    async def scenario() -> None:
        start = time.monotonic()
        await sync_to_async(groups._send_now, thread_sensitive=False)("user-1", {"type": "x"})
        assert time.monotonic() - start < 0.4 and sent == []  # handed to the loop, not awaited
        await asyncio.sleep(0.7)
        assert sent == ["user-1"]

    run(scenario)


def test_a_submission_sends_the_answers_queue_to_the_owners_other_pages_as_it_is(
    owner, owner_client, open_round, valid_data, redis_conn
) -> None:
    """Rendered once, for the answer: the owner's other round page is sent that same queue."""

    def post() -> str:
        response = owner_client.post(
            reverse("generation-submit", args=[open_round.pk]), valid_data, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        return response.content.decode()

    async def scenario() -> None:
        comm = page(owner, open_round.pk)
        await comm.connect()
        await comm.receive_from(timeout=5)
        answer = await sync_to_async(post)()
        pushed = await comm.receive_from(timeout=5)
        g = await Generation.objects.aget()
        assert f'id="gen-{g.pk}"' in pushed and 'id="my-queue"' in pushed
        assert pushed in answer  # the answer's own render, not one of the page's
        await comm.disconnect()

    run(scenario)


@pytest.mark.parametrize("stale", ["older read", "other round"])
def test_a_rendered_queue_is_not_sent_over_a_newer_page_or_another_rounds(
    stale, owner, generation, redis_conn
) -> None:
    """The page renders its own queue instead: it read the database after that queue was read, or
    it shows another round."""
    round_id = generation.round_id + (1 if stale == "other round" else 0)
    read_at = 0.0 if stale == "older read" else time.time() + 60

    async def scenario() -> None:
        comm = page(owner, generation.round_id)
        await comm.connect()
        await comm.receive_from(timeout=5)
        await sync_to_async(groups.queue_rendered)(
            owner_id=owner.pk,
            round_id=round_id,
            generation_id=generation.pk,
            html="<p>stale</p>",
            read_at=read_at,
        )
        pushed = await comm.receive_from(timeout=5)
        assert "stale" not in pushed and f'id="gen-{generation.pk}"' in pushed
        await comm.disconnect()

    run(scenario)
