"""The channel layer: channels-redis's Redis Pub/Sub layer, told to every page after a reconnect.

Why Pub/Sub and not channels-redis's default (core) layer: there each push to a group reads the
group's members and runs a script per connection, and each message a process receives costs three
round trips (a cleanup script, BZPOPMIN, a backup ZADD). In a burst, those were about 40% of a web
process's CPU (py-spy, bench/burst_web.py). Here a push is one PUBLISH, and a process hears each
message once, on one subscription, and hands it to its own sockets.

What Pub/Sub does not do is keep a message for a subscriber that is reconnecting (after Redis
restarted, say): the message is gone. So when a process's subscription comes back after a failure,
every socket of that process is sent `layer.reconnected`, and each page re-reads and sends what it
shows, as it does when it connects."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close

log = logging.getLogger(__name__)

RECONNECTED = {"type": "layer.reconnected"}
RETRY_AFTER_S = 0.2  # after a failed read, before the next (which reconnects)


class _Shard(RedisSingleShardConnection):
    async def _do_receiving(self) -> None:
        lost = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    # A read reconnects a dead connection and subscribes again to every channel.
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if lost:
                        lost = False
                        log.warning("channel layer subscription restored; every page re-reads its state")
                        self._tell_every_channel()
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                if not lost:
                    log.warning("channel layer subscription lost (%s); reconnecting", exc)
                lost = True
                await asyncio.sleep(RETRY_AFTER_S)

    def _tell_every_channel(self) -> None:
        layer = self.channel_layer
        data = layer.channel_layer.serialize(RECONNECTED)
        # All of them: a socket's groups may have been on this shard whatever its own channel's is.
        for queue in layer.channels.values():
            queue.put_nowait(data)


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]


class ChannelLayer(RedisPubSubChannelLayer):
    """settings.CHANNEL_LAYERS's backend: one `_LoopLayer` per event loop, as its parent keeps."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer
