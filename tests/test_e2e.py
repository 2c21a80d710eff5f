"""The whole path on real components: daphne, the conductor, a gpu-worker subprocess
(synthetic backend), PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from generations.models import Generation
from generations.queue import services
from tests.live import all_events, wait_for
from tests.media import count_frames

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
S = Generation.Status


def submit(owner, rnd, template, **params) -> Generation:
    values = {"prompt": "a lighthouse at dusk", "seed": 3, "frames": 9, "width": 64, "height": 48, "fps": 12}
    return services.generation_create(
        owner=owner, round_id=rnd.pk, template=template, params={**values, **params}
    )


def status_of(g: Generation) -> str:
    return Generation.objects.values_list("status", flat=True).get(pk=g.pk)


def events_for(redis_conn, g: Generation) -> list[str]:
    return [e["type"] for e in all_events(redis_conn) if e.get("generation_id") == g.pk]


def test_a_generation_goes_from_queued_to_a_decodable_take(
    live_stack, redis_conn, owner, open_round, template
):
    live_stack.start_web()
    live_stack.start_worker(frame_delay=0.1)
    g = submit(owner, open_round, template, frames=17)
    assert status_of(g) == S.QUEUED
    live_stack.start_conductor()
    seen: list[str] = []

    def finished() -> bool:
        status = status_of(g)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in Generation.TERMINAL

    wait_for(
        finished, timeout=60, interval=0.02, what="the generation to finish\n" + live_stack.log("e2e-gpu-1")
    )
    assert seen[0] == S.QUEUED and S.RUNNING in seen and seen[-1] == S.SUCCEEDED, seen
    kinds = events_for(redis_conn, g)
    assert kinds[0] == "started" and kinds[-1] == "succeeded" and "progress" in kinds
    take = Generation.objects.get(pk=g.pk).takes.get()
    assert count_frames(Path(settings.MEDIA_ROOT) / take.file.name) == (17, 64, 48)
    assert take.frame_count == 17 and take.poster


def test_a_generation_survives_a_conductor_killed_mid_run(
    live_stack, redis_conn, owner, open_round, template
):
    live_stack.start_web()
    live_stack.start_worker(frame_delay=0.15)
    live_stack.start_conductor()
    g = submit(owner, open_round, template, frames=17)
    wait_for(lambda: status_of(g) == S.RUNNING, timeout=30, what="the generation to run")
    live_stack.kill("conductor")
    wait_for(lambda: "succeeded" in events_for(redis_conn, g), timeout=30, what="the worker to finish")
    assert status_of(g) == S.RUNNING  # nobody applied the events yet: they wait in the stream
    live_stack.start_conductor()
    wait_for(lambda: status_of(g) == S.SUCCEEDED, timeout=30, what="the restarted conductor to catch up")
    assert Generation.objects.get(pk=g.pk).takes.count() == 1
