from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from generations.models import Generation
from generations.queue import eta, services
from gpu_worker.heartbeat import Heartbeat

S = Generation.Status


def submit(owner, rnd, template, frames: int = 9) -> Generation:
    params = {"prompt": "p", "seed": 1, "frames": frames, "width": 64, "height": 64, "fps": 12}
    return services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params)


def measured(owner, rnd, template, seconds: float, frames: int = 9) -> None:
    g = submit(owner, rnd, template, frames)
    end = timezone.now()
    Generation.objects.filter(pk=g.pk).update(
        status=S.SUCCEEDED, started_at=end - timedelta(seconds=seconds), finished_at=end
    )


def warm_worker(redis_conn) -> None:
    Heartbeat(redis_conn, name="w1", queues=["video"], probe=lambda: ("idle", None)).beat()


def test_it_puts_everyones_first_job_ahead_of_a_second(
    redis_conn, owner, other, open_round, template
) -> None:
    a1, a2 = submit(owner, open_round, template), submit(owner, open_round, template)
    b1 = submit(other, open_round, template)
    found = eta.estimates(redis_conn)
    assert [found[g.pk].position for g in (a1, b1, a2)] == [1, 2, 3]


def test_it_uses_measured_durations_scaled_by_cost(redis_conn, owner, open_round, template) -> None:
    warm_worker(redis_conn)
    measured(owner, open_round, template, seconds=60, frames=9)
    first, second = (
        submit(owner, open_round, template, frames=9),
        submit(owner, open_round, template, frames=27),
    )
    found = eta.estimates(redis_conn)
    assert round(found[first.pk].done_in) == 60
    assert round(found[second.pk].start_in) == 60 and round(found[second.pk].done_in) == 60 + 180


def test_it_falls_back_to_the_templates_estimate(redis_conn, owner, open_round, template) -> None:
    warm_worker(redis_conn)
    g = submit(owner, open_round, template)
    assert eta.estimates(redis_conn)[g.pk].done_in == template.estimated_seconds


def test_it_adds_a_cold_start_when_no_worker_is_warm(
    redis_conn, owner, open_round, template, settings
) -> None:
    settings.COLD_START_SECONDS = 90
    g = submit(owner, open_round, template)
    found = eta.estimates(redis_conn)[g.pk]
    assert found.cold and found.start_in == 90


def test_it_shows_the_position_on_the_job_card(redis_conn, owner_client, owner, open_round, template) -> None:
    submit(owner, open_round, template)
    html = owner_client.get(f"/rounds/{open_round.pk}/").content.decode()
    assert "next · starts in" in html and "generations left in this round" in html
