from __future__ import annotations

from datetime import timedelta

from django.template.loader import render_to_string
from django.utils import timezone

from generations.dispatch import attempts
from generations.models import Generation
from generations.queue import eta, services
from generations.queue.cards import with_estimates
from generations.templatetags.workshop import span
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


def beat(redis_conn, name: str, state: str, g: Generation) -> None:
    job = f"gen-{g.pk}-a{g.attempt}"
    Heartbeat(redis_conn, name=name, queues=["video"], probe=lambda: (state, job)).beat()


def render_card(g: Generation) -> str:
    card = with_estimates([Generation.objects.select_related("template").get(pk=g.pk)])[0]
    return render_to_string("generations/round.html#job-card", {"g": card})


def test_it_puts_everyones_first_job_ahead_of_a_second(
    redis_conn, owner, other, open_round, template
) -> None:
    a1, a2 = submit(owner, open_round, template), submit(owner, open_round, template)
    b1 = submit(other, open_round, template)
    found = eta.estimates(redis_conn)
    assert [found[g.pk].position for g in (a1, b1, a2)] == [1, 2, 3]


def test_it_fits_an_overhead_and_a_cost_per_frame(redis_conn, owner, open_round, template) -> None:
    warm_worker(redis_conn)
    for seconds, frames in ((30, 9), (50, 27), (30, 9), (50, 27)):
        measured(owner, open_round, template, seconds=seconds, frames=frames)
    first, second = (
        submit(owner, open_round, template, frames=9),
        submit(owner, open_round, template, frames=18),
    )
    found = eta.estimates(redis_conn)
    assert found[first.pk].measured and round(found[first.pk].done_in) == 30
    assert round(found[second.pk].start_in) == 30 and round(found[second.pk].done_in) == 30 + 40
    assert found[second.pk].done_low < found[second.pk].done_in < found[second.pk].done_high


def test_it_is_measuring_until_the_template_has_enough_runs(redis_conn, owner, open_round, template) -> None:
    warm_worker(redis_conn)
    measured(owner, open_round, template, seconds=60, frames=9)
    g = submit(owner, open_round, template, frames=25)
    assert not eta.estimates(redis_conn)[g.pk].measured
    html = render_card(g)
    assert "measuring…" in html


def test_it_names_the_worker_and_the_job_a_dispatched_one_waits_for(
    redis_conn, owner, other, open_round, template
) -> None:
    busy = [submit(owner, open_round, template), submit(other, open_round, template)]
    for g, worker in zip(busy, ("gpu-1", "gpu-2"), strict=True):
        attempts.generation_dispatch(generation=g)
        attempts.event_apply({"type": "started", "generation_id": g.pk, "attempt": 1, "worker": worker})
        beat(redis_conn, worker, "busy", g)
    # gpu-2's job is further along: the next job goes there.
    attempts.event_apply({"type": "progress", "generation_id": busy[1].pk, "attempt": 1, "percent": 80})
    waiting = submit(owner, open_round, template)
    attempts.generation_dispatch(generation=waiting)
    found = eta.estimates(redis_conn)[waiting.pk]
    assert (found.worker, found.after, found.position) == ("gpu-2", busy[1].pk, 0)
    assert f"Next on gpu-2, after #{busy[1].pk}" in render_card(waiting)


def test_it_says_a_gpu_is_warming_up(redis_conn, owner, open_round, template) -> None:
    Heartbeat(redis_conn, name="gpu-1", queues=["video"], probe=lambda: ("warming", None)).beat()
    g = submit(owner, open_round, template)
    attempts.generation_dispatch(generation=g)
    assert eta.estimates(redis_conn)[g.pk].cold
    assert "Warming up a GPU" in render_card(g)


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
    warm_worker(redis_conn)
    for seconds, frames in ((30, 9), (50, 27), (40, 18)):
        measured(owner, open_round, template, seconds=seconds, frames=frames)
    submit(owner, open_round, template)
    html = owner_client.get(f"/rounds/{open_round.pk}/").content.decode()
    assert "next · starts now · ready in under a minute" in html and "generations left in this round" in html


def test_it_shows_a_range_when_the_start_is_a_while_off(
    redis_conn, owner, other, open_round, template
) -> None:
    warm_worker(redis_conn)
    for seconds, frames in ((60, 9), (120, 27), (90, 18)):
        measured(owner, open_round, template, seconds=seconds, frames=frames)
    ahead = [submit(other, open_round, template, frames=27) for _ in range(3)]
    mine = submit(owner, open_round, template)
    # Alice has finished three: one of Bob's goes first (fair share), then hers.
    assert ahead and "2nd in line · starts in about 2 min · ready in about 3 min" in render_card(mine)


def test_it_words_a_wait_as_a_range() -> None:
    assert [span(10, 30), span(20, 100), span(300, 420), span(170, 190)] == [
        "in under a minute",
        "within 2 min",
        "in 5–7 min",
        "in about 3 min",
    ]
