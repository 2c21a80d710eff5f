"""Quotas, the one-time submit token, cancel from each state, retry."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from rq.serializers import JSONSerializer

from generations.dispatch import attempts, uploads
from generations.dispatch.conductor import Conductor
from generations.models import Generation, Round
from generations.queue import quota, services
from gpu_worker import protocol

S = Generation.Status
PARAMS = {"prompt": "a fox", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12}


def create(owner, rnd, template, **kw) -> Generation:
    return services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=PARAMS, **kw)


@pytest.fixture
def small_round(open_round) -> Round:
    Round.objects.filter(pk=open_round.pk).update(quota=2)
    open_round.refresh_from_db()
    return open_round


def test_it_refuses_a_submission_over_quota_saying_none_are_left(owner, small_round, template) -> None:
    create(owner, small_round, template)
    create(owner, small_round, template)
    with pytest.raises(services.SubmissionRefused, match="0 generations left.*all 2"):
        create(owner, small_round, template)
    assert Generation.objects.count() == 2


def test_it_does_not_count_cancelled_before_start_or_system_failures(owner, small_round, template) -> None:
    services.generation_cancel(generation=create(owner, small_round, template))
    failed = create(owner, small_round, template)
    Generation.objects.filter(pk=failed.pk).update(status=S.FAILED, retriable=True)
    assert quota.quota_for(owner, small_round).left == 2


def test_it_counts_validation_failures(owner, small_round, template) -> None:
    failed = create(owner, small_round, template)
    Generation.objects.filter(pk=failed.pk).update(status=S.FAILED, retriable=False)
    assert quota.quota_for(owner, small_round).left == 1


def test_it_counts_the_quota_alike_from_rows_already_read(owner, instructor, open_round, template) -> None:
    services.generation_cancel(generation=create(owner, open_round, template))
    for retriable in (True, False, None):
        failed = create(owner, open_round, template)
        Generation.objects.filter(pk=failed.pk).update(status=S.FAILED, retriable=retriable)
    started = create(owner, open_round, template)
    Generation.objects.filter(pk=started.pk).update(status=S.CANCELLED, started_at=started.created_at)
    create(owner, open_round, template)
    services.quota_top_up(round=open_round, filmmaker=owner, amount=2, by=instructor)
    rows = list(Generation.objects.filter(owner=owner, round=open_round))
    assert quota.quota_of(owner, open_round, rows) == quota.quota_for(owner, open_round)
    assert quota.quota_for(owner, open_round).used == 4


def test_it_lets_the_instructor_top_up_one_filmmaker(owner, other, instructor, small_round, template) -> None:
    services.quota_top_up(round=small_round, filmmaker=owner, amount=3, by=instructor)
    assert quota.quota_for(owner, small_round).total == 5
    assert quota.quota_for(other, small_round).total == 2


def test_it_creates_one_generation_per_submit_token(owner, open_round, template) -> None:
    token = uuid.uuid4()
    first = create(owner, open_round, template, submit_token=token)
    assert create(owner, open_round, template, submit_token=token) == first
    assert Generation.objects.count() == 1


def test_it_answers_a_double_post_with_one_generation(owner_client, open_round, valid_data) -> None:
    data = {**valid_data, "submit_token": str(uuid.uuid4())}
    url = reverse("generation-submit", args=[open_round.pk])
    assert owner_client.post(url, data).status_code == 200
    assert owner_client.post(url, data).status_code == 200
    assert Generation.objects.count() == 1


def test_it_cancels_a_queued_generation_at_once(generation) -> None:
    assert services.generation_cancel(generation=generation)
    assert generation.status == S.CANCELLED


def test_it_takes_a_dispatched_generation_out_of_rq(generation, redis_conn) -> None:
    Conductor(connection=redis_conn).dispatch_once()
    generation.refresh_from_db()
    services.generation_cancel(generation=generation)
    from rq import Queue

    assert Queue("video", connection=redis_conn, serializer=JSONSerializer).count == 0
    assert redis_conn.exists(protocol.cancel_key(generation.pk, 1))


def test_it_tells_the_worker_of_a_running_generation(generation, redis_conn) -> None:
    attempts.generation_dispatch(generation=generation)
    attempts.event_apply({"type": "started", "generation_id": generation.pk, "attempt": 1, "worker": "w"})
    pubsub = redis_conn.pubsub()
    pubsub.subscribe(protocol.CANCEL_CHANNEL)
    pubsub.get_message(timeout=1)
    services.generation_cancel(generation=generation)
    assert redis_conn.exists(protocol.cancel_key(generation.pk, 1))
    assert (
        pubsub.get_message(timeout=1)["data"]
        == f'{{"generation_id": {generation.pk}, "attempt": 1}}'.encode()
    )


def test_it_ignores_a_late_success_after_a_cancel(generation, redis_conn) -> None:
    attempts.generation_dispatch(generation=generation)
    services.generation_cancel(generation=generation)
    assert attempts.event_apply({"type": "succeeded", "generation_id": generation.pk, "attempt": 1}) is None
    with pytest.raises(uploads.UploadRefused):
        token = uploads.upload_url(generation=generation).rstrip("/").rsplit("/", 1)[1]
        uploads.take_store(token=token, filename="late.mp4", chunks=[b"x"])
    generation.refresh_from_db()
    assert generation.status == S.CANCELLED and not generation.takes.exists()


def test_it_removes_a_take_uploaded_just_before_the_cancel(generation, redis_conn, tmp_path) -> None:
    from tests.media import make_video

    attempts.generation_dispatch(generation=generation)
    token = uploads.upload_url(generation=generation).rstrip("/").rsplit("/", 1)[1]
    uploads.take_store(
        token=token, filename="early.mp4", chunks=[make_video(tmp_path / "v.mp4").read_bytes()]
    )
    services.generation_cancel(generation=generation)
    assert not generation.takes.exists()


def test_it_does_not_cancel_a_finished_generation(generation) -> None:
    Generation.objects.filter(pk=generation.pk).update(status=S.SUCCEEDED)
    assert not services.generation_cancel(generation=generation)


def test_it_retries_a_system_failure_with_the_same_parameters(generation) -> None:
    params = generation.params
    Generation.objects.filter(pk=generation.pk).update(status=S.FAILED, retriable=True, error_message="boom")
    generation.refresh_from_db()
    assert services.generation_retry(generation=generation)
    assert (generation.status, generation.error_message, generation.params) == (S.QUEUED, "", params)


def test_it_refuses_to_retry_a_validation_failure(generation) -> None:
    Generation.objects.filter(pk=generation.pk).update(status=S.FAILED, retriable=False)
    generation.refresh_from_db()
    with pytest.raises(services.SubmissionRefused, match="system reason"):
        services.generation_retry(generation=generation)


def test_it_requeues_a_retriable_failure_until_the_last_attempt(generation, settings) -> None:
    settings.MAX_ATTEMPTS = 2
    for attempt, expected in ((1, S.QUEUED), (2, S.FAILED)):
        attempts.generation_dispatch(generation=generation)
        event = {"type": "failed", "generation_id": generation.pk, "attempt": attempt, "retriable": True}
        attempts.event_apply({**event, "message": "ComfyUI stopped"})
        generation.refresh_from_db()
        assert generation.status == expected


def test_it_cancels_from_the_job_card(owner_client, generation) -> None:
    response = owner_client.post(reverse("generation-cancel", args=[generation.pk]))
    assert response.status_code == 200 and "Cancelled." in response.content.decode()


def test_it_hides_the_cancel_action_from_another_filmmaker(other_client, generation) -> None:
    assert other_client.post(reverse("generation-cancel", args=[generation.pk])).status_code == 404
    generation.refresh_from_db()
    assert generation.status == S.QUEUED


def test_it_holds_a_paused_rounds_queue(generation, redis_conn) -> None:
    Round.objects.filter(pk=generation.round_id).update(status=Round.Status.PAUSED)
    assert Conductor(connection=redis_conn).dispatch_once() == 0
    Round.objects.filter(pk=generation.round_id).update(status=Round.Status.OPEN)
    assert Conductor(connection=redis_conn).dispatch_once() == 1


@pytest.mark.django_db(transaction=True)
def test_it_lets_others_submit_during_a_submission_but_makes_a_pause_wait(owner, other, open_round, template):
    import threading

    from django.db import connection, transaction

    from generations.queue.services import _round_share_locked

    holding, done = threading.Event(), threading.Event()

    def submission_in_flight() -> None:  # what generation_create holds until it commits
        with transaction.atomic():
            _round_share_locked(open_round.pk, template.pk, None)
            holding.set()
            done.wait(10)
        connection.close()

    def pause() -> None:
        Round.objects.filter(pk=open_round.pk).update(status=Round.Status.PAUSED)
        connection.close()

    first = threading.Thread(target=submission_in_flight)
    first.start()
    assert holding.wait(10)
    create(other, open_round, template)  # not held up by the other submission
    pausing = threading.Thread(target=pause)
    pausing.start()
    pausing.join(0.5)
    assert pausing.is_alive()  # the pause waits for the submission to commit
    done.set()
    first.join(10), pausing.join(10)
    assert Round.objects.get(pk=open_round.pk).status == Round.Status.PAUSED
