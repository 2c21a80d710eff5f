"""Live pushes survive a Redis restart: the first send on a dead pooled connection is not lost."""

from __future__ import annotations

import asyncio

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer

from generations.live import groups
from tests.redis_server import RedisServer


@pytest.fixture
def private_layer(settings, tmp_path):  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis", persist=True).start()
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [server.url()]}}
    }
    channel_layers.backends.clear()
    yield server
    channel_layers.backends.clear()
    server.stop()


async def receive(layer, channel: str) -> dict:  # type: ignore[no-untyped-def]
    # The receiving side has a dead connection of its own after the restart; it reconnects on the next read.
    for _ in range(3):
        try:
            return await asyncio.wait_for(layer.receive(channel), 5)
        except redis.ConnectionError:
            continue
    raise AssertionError("nothing received")


def test_it_delivers_the_first_push_after_a_redis_restart(private_layer) -> None:
    async def scenario() -> list[str]:
        # As under daphne: sync code sends through async_to_sync onto the one event loop of the process,
        # whose pooled connection the restart leaves dead.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(groups.user_group(1), channel)
        await sync_to_async(groups._send_now)(groups.user_group(1), {"type": "generation.changed", "id": 1})
        got = [(await receive(layer, channel))["id"]]
        await asyncio.to_thread(private_layer.restart)
        await sync_to_async(groups._send_now)(groups.user_group(1), {"type": "generation.changed", "id": 2})
        got.append((await receive(layer, channel))["id"])
        return got

    assert asyncio.run(scenario()) == [1, 2]
