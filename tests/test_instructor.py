"""The instructor's panel: the round lifecycle, quota top-ups, the live room's figures, spend,
announcements, the spotlight and the brief's images. The helpers here serve the other
test_instructor_* files too."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from generations.dispatch import attempts
from generations.fleet import costs
from generations.fleet.autoscale import Autoscaler
from generations.instructor import announcements, briefs, lifecycle, room, spotlight, workshop
from generations.models import Announcement, Generation, Round, Take, WorkflowTemplate, Workshop
from generations.queue import quota, services

S = Generation.Status
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def submit(owner: User, rnd: Round, template: WorkflowTemplate, prompt: str = "a heron") -> Generation:
    params = {"prompt": prompt, "seed": 3, "frames": 9, "width": 64, "height": 64, "fps": 12}
    return services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params)


def finish(g: Generation, *, seconds: float = 60, circled: bool = False, content: bytes = b"mp4") -> Take:
    """Dispatch, run for `seconds` and succeed with one take (a small stand-in file)."""
    attempts.generation_dispatch(generation=g)
    take = Take(generation=g, attempt=g.attempt, filename="take.mp4", kind="video", content_type="video/mp4")
    take.size, take.circled = len(content), circled
    take.file.save("take.mp4", ContentFile(content), save=False)
    take.save()
    end = timezone.now()
    Generation.objects.filter(pk=g.pk).update(
        status=S.SUCCEEDED, worker="gpu-1", started_at=end - timedelta(seconds=seconds), finished_at=end
    )
    return take


@pytest.fixture
def instructor_client(instructor: User) -> Client:
    client = Client()
    client.force_login(instructor)
    return client


def post(client: Client, url_name: str, *args: object, **data: object):
    return client.post(reverse(url_name, args=args), data)


PARAMS = {"prompt": "a heron", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12}


# --- The round lifecycle ---------------------------------------------------------------------


def test_it_creates_a_round_as_a_draft_of_the_current_workshop(instructor_client, template) -> None:
    data = {"title": "Round 2", "brief": "Rain.", "templates": [template.pk], "quota": 4, "circle_limit": 2}
    response = post(instructor_client, "instructor-round-new", **data)
    rnd = Round.objects.get()
    assert response.status_code == 302 and rnd.status == Round.Status.DRAFT
    assert rnd.quota == 4 and list(rnd.templates.all()) == [template] and rnd.workshop is not None


def test_it_edits_a_round(instructor_client, open_round, template) -> None:
    data = {"title": "Night", "brief": "Neon.", "templates": [template.pk], "quota": 9, "circle_limit": 1}
    post(instructor_client, "instructor-round-edit", open_round.pk, gallery_shared="on", **data)
    open_round.refresh_from_db()
    assert (open_round.title, open_round.quota, open_round.gallery_shared) == ("Night", 9, True)


def test_it_opens_pauses_and_resumes_a_round(instructor_client, open_round) -> None:
    post(instructor_client, "instructor-round-pause", open_round.pk)
    assert Round.objects.get().status == Round.Status.PAUSED
    post(instructor_client, "instructor-round-open", open_round.pk)
    assert Round.objects.get().status == Round.Status.OPEN and Round.objects.get().opened_at is not None


def test_it_refuses_new_submissions_in_a_paused_round_but_keeps_the_queue(
    owner, open_round, template, generation
) -> None:
    lifecycle.round_pause(rnd=open_round)
    with pytest.raises(services.SubmissionRefused, match="paused"):
        submit(owner, open_round, template)
    assert Generation.objects.get().status == S.QUEUED


def test_it_refuses_a_transition_the_state_does_not_allow(open_round) -> None:
    lifecycle.round_close(rnd=open_round)
    with pytest.raises(workshop.PanelRefused, match="closed: it cannot be paused"):
        lifecycle.round_pause(rnd=open_round)


def test_it_says_how_many_queued_jobs_closing_cancels(
    instructor_client, owner, other, open_round, template
) -> None:
    submit(owner, open_round, template), submit(other, open_round, template)
    attempts.generation_dispatch(generation=submit(owner, open_round, template))
    html = instructor_client.get(reverse("instructor-round-close", args=[open_round.pk])).content.decode()
    assert "cancels <strong>2 queued jobs</strong>" in html and "1 running job finishes" in html
    assert Round.objects.get().status == Round.Status.OPEN


def test_it_closes_a_round_and_cancels_its_queued_jobs_only(
    instructor_client, owner, open_round, template
) -> None:
    queued = submit(owner, open_round, template)
    running = submit(owner, open_round, template)
    attempts.generation_dispatch(generation=running)
    response = post(instructor_client, "instructor-round-close", open_round.pk)
    assert response.status_code == 302 and Round.objects.get().status == Round.Status.CLOSED
    assert Generation.objects.get(pk=queued.pk).status == S.CANCELLED
    assert Generation.objects.get(pk=running.pk).status == S.DISPATCHED


def test_it_reloads_the_page_after_an_htmx_lifecycle_action(instructor_client, open_round) -> None:
    url = reverse("instructor-round-pause", args=[open_round.pk])
    response = instructor_client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Refresh"] == "true"


# --- The live room ---------------------------------------------------------------------------


def test_it_tops_up_a_filmmakers_quota(instructor_client, instructor, owner, open_round) -> None:
    response = post(instructor_client, "instructor-top-up", open_round.pk, owner.pk, amount="5")
    assert response.status_code == 200 and 'id="room-live"' in response.content.decode()
    assert quota.quota_for(owner, open_round).total == open_round.quota + 5
    assert open_round.top_ups.get().granted_by == instructor


@pytest.mark.parametrize("amount", ["0", "-1", "abc", "101"])
def test_it_refuses_a_bad_top_up(instructor_client, owner, open_round, amount) -> None:
    response = post(instructor_client, "instructor-top-up", open_round.pk, owner.pk, amount=amount)
    assert response.status_code == 422 and not open_round.top_ups.exists()


def test_it_cancels_any_filmmakers_job(instructor_client, generation) -> None:
    response = post(instructor_client, "instructor-cancel", generation.pk)
    assert response.status_code == 200 and Generation.objects.get().status == S.CANCELLED


def test_it_shows_the_room_by_state_and_by_filmmaker(
    instructor_client, owner, other, open_round, template
) -> None:
    submit(owner, open_round, template, "a queued heron")
    finish(submit(other, open_round, template), circled=True)
    html = instructor_client.get(reverse("instructor-room", args=[open_round.pk])).content.decode()
    assert 'id="count-queued">1<' in html and 'id="count-succeeded">1<' in html
    assert "a queued heron" in html and f'id="filmmaker-{owner.pk}"' in html
    assert f"{open_round.quota - 1} of {open_round.quota}" in html


def test_the_room_says_why_a_job_was_queued_again_and_the_card_says_one_calm_sentence(
    instructor_client, owner_client, generation, open_round
) -> None:
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.RUNNING, attempt=1)
    attempts.attempt_lost(
        generation_id=generation.pk, attempt=1, reason="no heartbeat from worker w9 for 41 s"
    )
    room_html = instructor_client.get(reverse("instructor-room", args=[open_round.pk])).content.decode()
    card_html = owner_client.get(reverse("round", args=[open_round.pk])).content.decode()
    assert "no heartbeat from worker w9 for 41 s" in room_html
    assert attempts.REQUEUED_MESSAGE in card_html and "w9" not in card_html


def test_it_counts_each_filmmakers_jobs(owner, other, open_round, template) -> None:
    submit(owner, open_round, template)
    finish(submit(owner, open_round, template), circled=True)
    services.generation_cancel(generation=submit(owner, open_round, template))
    row = next(r for r in room.room_filmmakers(open_round) if r.user == owner)
    assert (row.queued, row.running, row.done, row.circled, row.quota.left) == (
        1,
        0,
        1,
        1,
        open_round.quota - 2,
    )
    assert other in [r.user for r in room.room_filmmakers(open_round)]


def test_it_lists_the_gpu_workers_from_their_heartbeats(generation, redis_conn) -> None:
    from gpu_worker import protocol

    beat = {"name": "gpu-7", "state": "busy", "queues": "video", "generation_id": generation.pk, "attempt": 1}
    redis_conn.hset(protocol.worker_key("gpu-7"), mapping={**beat, "ts": timezone.now().timestamp()})
    redis_conn.sadd(protocol.WORKERS_SET, "gpu-7")
    [worker] = room.room_workers(redis_conn)
    assert (worker.name, worker.state, worker.generation) == ("gpu-7", "busy", generation) and worker.age < 5


def test_the_room_shows_each_workers_job_and_the_autoscalers_reasons_from_what_it_read_once(
    owner, other, open_round, template, redis_conn
) -> None:
    from gpu_worker import protocol

    running, idle_job = submit(owner, open_round, template), submit(other, open_round, template)
    attempts.generation_dispatch(generation=running)
    for name, job in (("gpu-1", running.pk), ("gpu-2", idle_job.pk + 1000)):  # gpu-2: a job not in flight
        beat = {"name": name, "state": "busy", "queues": "video", "generation_id": job, "attempt": 1}
        redis_conn.hset(protocol.worker_key(name), mapping={**beat, "ts": timezone.now().timestamp()})
        redis_conn.sadd(protocol.WORKERS_SET, name)
    state = room.room_state(open_round)
    rows = {w.name: w for w in state["workers"]}
    assert rows["gpu-1"].generation == running and rows["gpu-1"].generation.owner == owner
    assert rows["gpu-2"].generation is None and rows["gpu-2"].generation_id == idle_job.pk + 1000
    target = state["target"]
    assert (target.running, target.waiting_filmmakers) == (2, 1)  # bob waits; alice's job is sent
    assert target.for_the_work >= 1


def test_it_estimates_the_time_to_drain_the_queue(owner, open_round, template, redis_conn) -> None:
    submit(owner, open_round, template), submit(owner, open_round, template)
    state = room.room_state(open_round)
    # No warm worker: a cold start, then two jobs of the template's estimate one after the other.
    assert state["drain_seconds"] >= 2 * template.estimated_seconds


# --- Spend -----------------------------------------------------------------------------------


def test_it_prices_gpu_seconds_of_finished_and_running_jobs(settings, owner, open_round, template) -> None:
    settings.GPU_PRICE_PER_HOUR = "3.6"
    finish(submit(owner, open_round, template), seconds=1000)
    running = submit(owner, open_round, template)
    attempts.generation_dispatch(generation=running)
    Generation.objects.filter(pk=running.pk).update(
        status=S.RUNNING, started_at=timezone.now() - timedelta(seconds=500)
    )
    submit(owner, open_round, template)  # queued: costs nothing yet
    spend = costs.spend_for(Workshop.objects.create(name="Day", gpu_budget=Decimal("3")))
    assert 1499 < spend.gpu_seconds < 1510 and spend.cost == Decimal("1.50") and spend.percent == 50


def test_it_saves_the_workshop_record(instructor_client) -> None:
    response = post(
        instructor_client, "instructor-workshop", name="Berlin day", date="2026-05-04", gpu_budget="250"
    )
    workshop = Workshop.objects.get()
    assert response.status_code == 302 and (workshop.name, str(workshop.date)) == ("Berlin day", "2026-05-04")
    assert workshop.gpu_budget == Decimal("250")


# --- Announcements and the spotlight ---------------------------------------------------------


def test_it_announces_and_withdraws(instructor_client, instructor) -> None:
    post(instructor_client, "instructor-announce", text="  Lunch   in ten minutes ")
    announcement = Announcement.objects.get()
    assert announcement.text == "Lunch in ten minutes" and announcements.announcements_active() == [
        announcement
    ]
    post(instructor_client, "instructor-announcement-withdraw", announcement.pk)
    assert announcements.announcements_active() == []


def test_it_refuses_an_empty_announcement(instructor_client) -> None:
    post(instructor_client, "instructor-announce", text="   ")
    assert not Announcement.objects.exists()


def test_it_puts_any_take_in_the_spotlight(instructor_client, generation) -> None:
    take = finish(generation)
    response = post(instructor_client, "instructor-spotlight", take.pk)
    assert response.status_code == 200 and 'id="spotlight-now"' in response.content.decode()
    assert spotlight.spotlight_current() == take
    html = instructor_client.get(reverse("screen")).content.decode()
    assert reverse("take-file", args=[take.pk]) in html and generation.prompt in html


def test_it_steps_through_the_rounds_circled_takes(owner, other, open_round, template) -> None:
    first = finish(submit(owner, open_round, template), circled=True)
    finish(submit(owner, open_round, template))  # not circled: skipped
    second = finish(submit(other, open_round, template), circled=True)
    steps = [spotlight.spotlight_next(rnd=open_round) for _ in range(3)]
    assert steps == [first, second, first]


def test_it_says_when_there_is_no_circled_take(instructor_client, open_round) -> None:
    response = post(instructor_client, "instructor-spotlight-next", open_round.pk)
    assert response.status_code == 422 and spotlight.spotlight_current() is None


# --- The brief's reference images ------------------------------------------------------------


def test_it_stores_reference_images_and_serves_them_to_filmmakers(
    instructor_client, owner_client, open_round, template
) -> None:
    data = {"title": "R", "brief": "B", "templates": [template.pk], "quota": 3, "circle_limit": 1}
    image = SimpleUploadedFile("mood board.png", PNG, content_type="image/png")
    post(instructor_client, "instructor-round-edit", open_round.pk, images=image, **data)
    assert briefs.brief_images(open_round) == ["mood_board.png"]
    response = owner_client.get(reverse("round-brief-image", args=[open_round.pk, "mood_board.png"]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == PNG


def test_it_refuses_a_file_that_is_not_the_image_it_claims(open_round) -> None:
    fake = SimpleUploadedFile("x.png", b"<html><script>alert(1)</script>", content_type="image/png")
    with pytest.raises(workshop.PanelRefused, match="not a PNG image"):
        briefs.brief_image_add(rnd=open_round, upload=fake)
    assert briefs.brief_images(open_round) == []


def test_it_hides_a_drafts_images_from_filmmakers(owner_client, open_round) -> None:
    briefs.brief_image_add(rnd=open_round, upload=SimpleUploadedFile("a.png", PNG))
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.DRAFT)
    response = owner_client.get(reverse("round-brief-image", args=[open_round.pk, "a.png"]))
    assert response.status_code == 404


def test_it_confirms_a_warm_up_and_explains_the_target(
    instructor_client, owner, other, open_round, redis_conn
) -> None:
    response = post(instructor_client, "instructor-warm", workers="2")
    assert "Warming 2 GPUs" in json.loads(response["HX-Trigger"])["toast"]["text"]
    for person in (owner, other):
        services.generation_create(
            owner=person, round_id=open_round.pk, template=open_round.templates.get(), params=PARAMS
        )
    Autoscaler().publish(redis_conn, ["video"])
    html = instructor_client.get(reverse("instructor-room", args=[open_round.pk])).content.decode()
    assert "2 wanted</strong>: 2 waiting filmmakers (one GPU each) + 2 warm for 15 more min" in html


def test_it_confirms_a_top_up_with_a_toast(instructor_client, owner, open_round) -> None:
    response = post(instructor_client, "instructor-top-up", open_round.pk, owner.pk, amount="5")
    text = json.loads(response["HX-Trigger"])["toast"]["text"]
    assert text == f"+5 for {owner.username}: {open_round.quota + 5} left in this round."
