"""The live room reads everything in a constant number of queries, whatever the number of filmmakers."""

from __future__ import annotations

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from generations.instructor.room import room_state
from generations.models import Generation, QuotaTopUp, Round, Take, WorkflowTemplate
from generations.queue.snapshot import line_publish
from gpu_worker import protocol

pytestmark = pytest.mark.django_db
S = Generation.Status
ROOM = "generations/instructor/room.html"
PARAMS = {"prompt": "a heron", "seed": 3, "frames": 9, "width": 64, "height": 64, "fps": 12}


def crowd(n: int, rnd: Round, template: WorkflowTemplate, *, start: int = 0) -> None:
    """n filmmakers, each with a queued, a running, a failed and a succeeded generation (its take
    circled), and a top-up."""
    users = User.objects.bulk_create(
        User(username=f"filmmaker{i:03d}", role=User.Role.FILMMAKER) for i in range(start, start + n)
    )
    now = timezone.now()
    states = (S.QUEUED, S.RUNNING, S.FAILED, S.SUCCEEDED)
    generations = Generation.objects.bulk_create(
        Generation(
            owner=u, round=rnd, template=template, params=PARAMS, workflow={}, status=status, attempt=1,
            worker="gpu-1" if status == S.RUNNING else "", started_at=None if status == S.QUEUED else now,
            finished_at=now if status in (S.FAILED, S.SUCCEEDED) else None,
        )
        for u in users
        for status in states
    )  # fmt: skip
    Take.objects.bulk_create(
        Take(generation=g, attempt=1, filename="take.mp4", kind="video", content_type="video/mp4",
             file=f"takes/g{g.pk}.mp4", circled=True)
        for g in generations
        if g.status == S.SUCCEEDED
    )  # fmt: skip
    QuotaTopUp.objects.bulk_create(QuotaTopUp(round=rnd, filmmaker=u, amount=2) for u in users)


def room_queries(rnd: Round, redis_conn) -> int:
    line_publish(redis_conn)  # as the conductor keeps it: the room reads it
    with CaptureQueriesContext(connection) as queries:
        html = render_to_string(f"{ROOM}#room-live", room_state(rnd))
    assert 'id="room-live"' in html
    return len(queries)


def test_it_renders_the_room_in_the_same_number_of_queries_for_20_and_200_filmmakers(
    open_round, template, redis_conn
) -> None:
    running = Generation.objects.filter(status=S.RUNNING)
    crowd(20, open_round, template)
    beat = {"name": "gpu-1", "state": "busy", "queues": "video", "attempt": 1}
    beat |= {"generation_id": running.first().pk, "ts": timezone.now().timestamp()}
    redis_conn.hset(protocol.worker_key("gpu-1"), mapping=beat)
    redis_conn.sadd(protocol.WORKERS_SET, "gpu-1")
    at_20 = room_queries(open_round, redis_conn)
    crowd(180, open_round, template, start=20)
    at_200 = room_queries(open_round, redis_conn)
    assert User.objects.filter(role=User.Role.FILMMAKER).count() == 200
    assert at_200 == at_20, f"{at_20} queries at 20 filmmakers, {at_200} at 200"
