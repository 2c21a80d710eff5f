"""Revoking a host mid-job: its job finishes elsewhere as the next attempt, its late events and uploads
are refused, nothing else stops. And Redis restarted empty gets the hosts' users back."""

from __future__ import annotations

import httpx
import pytest
import redis

from generations.broker import acl
from generations.dispatch import uploads
from generations.fleet.hosts import host_revoke
from generations.models import Generation, Worker
from gpu_worker import protocol
from tests.live import wait_for
from tests.media import make_video
from tests.security.conftest import status_of, submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_revoking_a_host_mid_job_moves_its_job_to_another(
    stack, filmmaker, other, video_round, redis_conn, tmp_path
) -> None:
    stack.start_worker("second", frame_delay=0.05)
    g = submit(filmmaker, video_round, frames=80)  # four seconds of rendering
    wait_for(
        lambda: Generation.objects.filter(pk=g.pk, status="running", progress__gt=0).exists(),
        timeout=30,
        what="a start",
    )
    g.refresh_from_db()
    holder = g.host
    assert holder is not None
    also = submit(other, video_round)  # submitted meanwhile: must not notice anything
    assert host_revoke(host=holder)  # as the web app does it, with the web app's Redis user
    g.refresh_from_db()
    assert (g.status, g.attempt) != ("running", 1), "revoking sends its attempt elsewhere at once"
    assert holder.username not in acl.users(redis_conn)
    clients = stack.redis_server.admin().client_list()
    assert not [c for c in clients if c.get("user") == holder.username]
    g = succeeds(stack, g, timeout=90)
    assert g.attempt == 2 and g.host is not None and g.host != holder
    assert {t.attempt for t in g.takes.all()} == {2}
    succeeds(stack, also, timeout=90)
    assert set(Worker.objects.filter(host=holder).values_list("state", flat=True)) == {"revoked"}
    # Its late events and uploads are refused: Redis no longer knows its user, the app its secret.
    env = stack.hosts[holder.name]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(env["REDIS_URL"]).xadd(
            protocol.host_events_stream(holder.username), {"data": "{}"}
        )
    url = httpx.URL(env["REDIS_URL"])
    late = Generation(pk=g.pk, attempt=1)
    video = make_video(tmp_path / "late.mp4").read_bytes()
    response = httpx.put(
        uploads.upload_url(generation=late) + "late.mp4", content=video, auth=(url.username, url.password)
    )
    assert response.status_code == 401
    g.refresh_from_db()
    assert g.status == "succeeded" and g.attempt == 2 and {t.attempt for t in g.takes.all()} == {2}
    # The other worker ran the whole time under its ACL without a refusal.
    assert [e for e in stack.redis_server.acl_log() if e["username"] != holder.username] == []
    assert stack.procs["conductor"].poll() is None and stack.procs["web"].poll() is None


def test_redis_restarted_empty_gets_the_hosts_users_back(stack, filmmaker, video_round) -> None:
    succeeds(stack, submit(filmmaker, video_round))
    stack.redis_server.restart_empty()
    assert "gpu-honest" not in acl.users(stack.redis_server.admin())
    wait_for(
        lambda: "gpu-honest" in acl.users(stack.redis_server.admin()),
        timeout=30,
        what="the conductor to re-apply",
    )
    g = submit(filmmaker, video_round, seed=9)
    succeeds(stack, g, timeout=120)
    assert status_of(g) == "succeeded"
