"""Attack 5: with the shared password a host stopped all dispatch (the leader lock), broke the
conductor's fleet sync every pass with a heartbeat priced -1e308, and closed filmmakers' live sockets
through the channel layer. Now its ACL reaches none of those keys, and what it may write (its own
heartbeat) is checked against a schema before anyone reads it."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from generations.broker import acl
from generations.models import Worker
from gpu_worker import protocol
from tests.live import wait_for
from tests.security.conftest import submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
NOPERM = redis.exceptions.NoPermissionError


def test_a_host_cannot_stall_dispatch_or_the_fleet(
    stack, mallory, filmmaker, video_round, redis_conn
) -> None:
    r = mallory.redis
    refused = [
        lambda: r.set("workshop:conductor:leader", "mallory", ex=3600),
        lambda: r.delete("workshop:conductor:leader"),
        lambda: r.set("workshop:desired", "{}"),
        lambda: r.set("workshop:preview:g1:a1", "x"),
        lambda: r.zadd("workshop:asgi:groupuser-1", {"x": 1}),
        lambda: r.publish("workshop:asgi:specific", "x"),
        # The channel layer is Redis Pub/Sub (live.layer): a push to a filmmaker's pages, forged.
        lambda: r.publish(f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}__group__user-1", "x"),
        lambda: r.hset(protocol.worker_key("gpu-honest"), "state", "idle"),
        lambda: r.srem(protocol.host_workers_set("gpu-honest"), "gpu-honest"),
        lambda: r.srem(protocol.WORKERS_SET, "gpu-honest"),
        lambda: r.srem(protocol.HOSTS_SET, "gpu-honest"),
        lambda: r.set(protocol.cancel_key(1, 1), "1"),
        lambda: r.delete("rq:queue:video"),
        lambda: r.flushall(),
        lambda: r.flushdb(),
        lambda: r.config_get("*"),
        lambda: r.keys("*"),
        lambda: r.script_flush(),
        lambda: r.eval("return 1", 0),
        lambda: r.execute_command("DEBUG", "SLEEP", "0"),
        lambda: r.execute_command("MONITOR"),
        lambda: r.execute_command("ACL", "SETUSER", "mallory2", "on", ">x", "~*", "+@all"),
        lambda: r.execute_command("CLIENT", "KILL", "USER", "workshop-conductor"),
        lambda: r.execute_command("SELECT", "1"),
    ]
    for attempt in refused:
        with pytest.raises(redis.exceptions.ResponseError) as exc:
            attempt()
        # NOPERM from the ACL (DEBUG is also off in the server's own configuration).
        assert isinstance(exc.value, NOPERM) or "DEBUG command not allowed" in str(exc.value)
    # What it may write: its own heartbeat. An absurd one is dropped, never breaks the sync.
    r.hset(
        protocol.worker_key(mallory.username),
        mapping={
            "name": mallory.username,
            "state": "idle",
            "queues": "video",
            "ts": "1e308",
            "price_per_hour": "-1e308",
        },
    )
    r.sadd(protocol.host_workers_set(mallory.username), mallory.username)
    redis_conn.delete("workshop:desired")
    g = submit(filmmaker, video_round)
    succeeds(stack, g)
    wait_for(
        lambda: redis_conn.exists("workshop:desired"),
        timeout=15,
        what="the autoscaling target to be published",
    )
    assert not Worker.objects.filter(name=mallory.username).exists()
    assert Worker.objects.filter(name="gpu-honest").exists()
    # The honest worker ran the whole time under its own ACL without a single refusal.
    assert [e for e in stack.redis_server.acl_log() if e["username"] != mallory.username] == []
    assert acl.users(redis_conn) >= {"gpu-honest", "gpu-mallory"}
