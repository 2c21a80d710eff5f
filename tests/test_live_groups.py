"""Live pushes survive a Redis restart: the first send on a dead pooled connection is not lost,
and every socket is told when its process's subscription comes back (a push meanwhile is lost:
Pub/Sub keeps nothing for a subscriber that is away), so that each page sends its state again."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from generations.live import groups
from generations.live.layer import RECONNECTED
from generations.routing import websocket_urlpatterns
from tests.redis_server import RedisServer


@pytest.fixture
def private_layer(settings, tmp_path):  # type: ignore[no-untyped-def]
    """The production layer, on a Redis of its own that the test restarts."""
    server = RedisServer(tmp_path / "redis").start()
    default = django_settings.CHANNEL_LAYERS["default"]
    config = {**default["CONFIG"], "hosts": [server.url()]}
    settings.CHANNEL_LAYERS = {"default": {**default, "CONFIG": config}}
    channel_layers.backends.clear()
    yield server
    channel_layers.backends.clear()
    server.stop()


async def send(user_id: int, generation_id: int) -> None:
    # As under daphne: sync code sends through async_to_sync onto the one event loop of the process,
    # whose pooled connection the restart leaves dead.
    message = {"type": "generation.changed", "id": generation_id}
    await sync_to_async(groups._send_now)(groups.user_group(user_id), message)


def test_it_tells_every_channel_after_a_redis_restart_and_delivers_the_next_push(private_layer) -> None:
    async def scenario() -> list[object]:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(groups.user_group(1), channel)
        await send(1, 1)
        got = [await asyncio.wait_for(layer.receive(channel), 5)]
        await asyncio.to_thread(private_layer.restart)
        got.append(await asyncio.wait_for(layer.receive(channel), 10))  # subscribed again
        await send(1, 2)  # the first send on the sender's dead pooled connection
        got.append(await asyncio.wait_for(layer.receive(channel), 5))
        return [m.get("id", m["type"]) for m in got]

    assert asyncio.run(scenario()) == [1, RECONNECTED["type"], 2]


@pytest.mark.django_db(transaction=True)
def test_a_round_page_sends_its_state_again_after_a_redis_restart(private_layer, owner, generation) -> None:
    async def scenario() -> None:
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/rounds/{generation.round_id}/")
        comm.scope["user"] = owner
        assert (await comm.connect())[0]
        first = await comm.receive_from(timeout=5)
        assert 'id="my-queue"' in first and f'id="gen-{generation.pk}"' in first
        await comm.receive_nothing(timeout=0.3)
        await asyncio.to_thread(private_layer.restart)
        again = await comm.receive_from(timeout=10)
        assert 'id="my-queue"' in again and f'id="gen-{generation.pk}"' in again and 'id="my-takes"' in again
        await comm.disconnect()

    asyncio.run(scenario())


def test_a_batch_reaches_every_group_in_order(private_layer) -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        layer = get_channel_layer()
        mine, theirs = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(groups.user_group(1), mine)
        await layer.group_add(groups.user_group(2), theirs)
        batch = [(groups.user_group(owner), {"type": "generation.changed", "id": i}) for i, owner in
                 [(1, 1), (2, 2), (3, 1), (4, 1)]]  # fmt: skip
        await sync_to_async(groups._send_all_now)(batch)
        got_mine = [(await asyncio.wait_for(layer.receive(mine), 5))["id"] for _ in range(3)]
        got_theirs = [(await asyncio.wait_for(layer.receive(theirs), 5))["id"]]
        return got_mine, got_theirs

    assert asyncio.run(scenario()) == ([1, 3, 4], [2])
