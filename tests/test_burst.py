"""Burst-aware reservation: a window after "open" or "Go" keeps GPUs for those who have not pressed."""

from __future__ import annotations

import pytest
from django.utils import timezone

from generations.dispatch.conductor import Conductor
from generations.domain.policy import BurstWindow, Pending, plan
from generations.instructor import lifecycle
from generations.models import Generation, Round
from generations.queue import eta, services
from generations.queue import window as burst_window
from gpu_worker.heartbeat import Heartbeat

S = Generation.Status
PARAMS = {"prompt": "p", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12}


def idle_workers(redis_conn, n: int) -> None:
    for i in range(n):
        Heartbeat(redis_conn, name=f"w{i}", queues=["video"], probe=lambda: ("idle", None)).beat()


def submit(user, rnd, template, n: int = 1) -> list[Generation]:
    return [
        services.generation_create(owner=user, round_id=rnd.pk, template=template, params=PARAMS)
        for _ in range(n)
    ]


def statuses(gens: list[Generation]) -> list[str]:
    return [Generation.objects.get(pk=g.pk).status for g in gens]


@pytest.fixture
def window(open_round, owner, other, settings) -> Round:
    settings.DISPATCH_PREFETCH = 0
    open_round.filmmakers.add(owner, other)
    burst_window.window_go(round=open_round)
    return open_round


def test_it_caps_each_filmmaker_while_someone_has_not_started(window, owner, template, redis_conn) -> None:
    idle_workers(redis_conn, 4)  # 4 workers / 2 expected filmmakers: 2 each
    gens = submit(owner, window, template, 3)
    Conductor(connection=redis_conn).dispatch_once()
    assert statuses(gens) == [S.DISPATCHED, S.DISPATCHED, S.QUEUED]


def test_it_closes_early_once_everyone_started(window, owner, other, template, redis_conn) -> None:
    idle_workers(redis_conn, 4)
    conductor = Conductor(connection=redis_conn)
    mine = submit(owner, window, template, 3)
    conductor.dispatch_once()
    submit(other, window, template, 1)
    conductor.dispatch_once()  # other starts: everyone has, so the window closes
    conductor.dispatch_once()  # and the held GPU goes to the held job at once
    window.refresh_from_db()
    assert window.burst_closed_at is not None and statuses(mine)[2] == S.DISPATCHED


def test_it_lets_the_instructor_close_it(window, owner, template, redis_conn) -> None:
    idle_workers(redis_conn, 4)
    gens = submit(owner, window, template, 3)
    assert burst_window.window_close(round=window)
    Conductor(connection=redis_conn).dispatch_once()
    assert statuses(gens) == [S.DISPATCHED] * 3


def test_it_reopens_on_go(window, owner, template, redis_conn) -> None:
    burst_window.window_close(round=window)
    burst_window.window_go(round=window)
    assert burst_window.window_of(window) is not None and burst_window.seconds_left(window) > 100


def test_it_ends_by_itself(window, settings) -> None:
    Round.objects.filter(pk=window.pk).update(
        burst_opened_at=timezone.now() - timezone.timedelta(seconds=121)
    )
    window.refresh_from_db()
    assert burst_window.seconds_left(window) == 0
    caps, closed = burst_window.windows_update({}, {}, workers=4)
    assert caps == {} and closed == [window.pk]


def test_it_tells_a_held_filmmaker_why(window, owner, owner_client, template, redis_conn) -> None:
    idle_workers(redis_conn, 2)  # 2 workers / 2 filmmakers: 1 each
    gens = submit(owner, window, template, 2)
    Conductor(connection=redis_conn).dispatch_once()
    assert eta.estimates(redis_conn)[gens[1].pk].held
    assert "Keeping a GPU free" in owner_client.get(f"/rounds/{window.pk}/").content.decode()


def test_the_policy_holds_beyond_the_cap_but_not_priority() -> None:
    jobs = [Pending(1, 1, 7, "video", False, 1.0), Pending(2, 1, 7, "video", False, 2.0)]
    instructors = [Pending(3, 9, 7, "video", True, 3.0)]
    chosen = plan(jobs + instructors, {9: 1}, {}, {"video": 10}, caps={7: 1})
    assert [p.id for p in chosen] == [3, 1]


def test_the_window_caps_at_least_one_and_closes_when_all_started() -> None:
    w = BurstWindow(round_id=7, opened_at=0.0, length=120.0, expected=frozenset({1, 2, 3}))
    assert w.cap(10.0, {1: 1}, {}, workers=2) == 1
    assert w.cap(10.0, {1: 1, 2: 1}, {(7, 3): 1}, workers=2) is None
    assert w.cap(130.0, {}, {}, workers=2) is None


def test_the_instructor_presses_go_and_sees_the_window(client, instructor, open_round) -> None:
    client.force_login(instructor)
    assert client.post(f"/instructor/rounds/{open_round.pk}/go").status_code == 302
    room = client.get(f"/instructor/rounds/{open_round.pk}/room").content.decode()
    assert 'id="burst-window"' in room and "data-countdown" in room and "Close it now" in room


def test_the_instructor_closes_the_window_from_the_room(client, instructor, window) -> None:
    client.force_login(instructor)
    client.post(f"/instructor/rounds/{window.pk}/burst-close")
    window.refresh_from_db()
    assert window.burst_closed_at is not None and burst_window.window_of(window) is None


def test_a_filmmaker_cannot_press_go(owner_client, open_round) -> None:
    assert owner_client.post(f"/instructor/rounds/{open_round.pk}/go").status_code == 403
    open_round.refresh_from_db()
    assert open_round.burst_opened_at is None


def test_opening_a_round_opens_its_window(instructor, template) -> None:
    rnd = Round.objects.create(title="R2", status=Round.Status.DRAFT)
    lifecycle.round_open(rnd=rnd)
    assert burst_window.window_of(rnd) is not None
