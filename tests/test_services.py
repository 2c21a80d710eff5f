from __future__ import annotations

from pathlib import Path

import pytest

from generations.dispatch import attempts, uploads
from generations.models import Generation, Round, Take
from generations.queue import services
from tests.media import make_video

S = Generation.Status
PARAMS = {"prompt": "a fox", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12}


def ev(g: Generation, kind: str, attempt: int | None = None, **fields: object) -> dict[str, object]:
    return {"type": kind, "generation_id": g.pk, "attempt": attempt or g.attempt, "worker": "w1", **fields}


def dispatched(g: Generation) -> Generation:
    assert attempts.generation_dispatch(generation=g)
    return g


def test_it_creates_a_queued_generation_with_the_resolved_workflow(generation: Generation) -> None:
    assert generation.status == S.QUEUED
    assert generation.workflow["1"]["inputs"]["prompt"] == "a lighthouse"


@pytest.mark.parametrize("status", [Round.Status.PAUSED, Round.Status.CLOSED, Round.Status.DRAFT])
def test_it_refuses_a_round_that_is_not_open(owner, open_round, template, status) -> None:
    Round.objects.filter(pk=open_round.pk).update(status=status)
    with pytest.raises(services.SubmissionRefused, match=status):
        services.generation_create(owner=owner, round_id=open_round.pk, template=template, params=PARAMS)
    assert not Generation.objects.exists()


def test_it_refuses_a_template_the_round_does_not_offer(owner, open_round, template) -> None:
    open_round.templates.clear()
    with pytest.raises(services.SubmissionRefused, match="not offered"):
        services.generation_create(owner=owner, round_id=open_round.pk, template=template, params=PARAMS)


def test_it_dispatches_once_with_a_new_attempt(generation: Generation) -> None:
    stale = Generation.objects.get(pk=generation.pk)
    assert attempts.generation_dispatch(generation=generation)
    assert generation.status == S.DISPATCHED and generation.attempt == 1
    assert not attempts.generation_dispatch(generation=stale)


def test_it_applies_a_normal_event_sequence(generation: Generation) -> None:
    g = dispatched(generation)
    attempts.event_apply(ev(g, "started"))
    attempts.event_apply(ev(g, "progress", percent=40, message="frame 4/9"))
    attempts.event_apply(ev(g, "succeeded", outputs=["a.mp4"]))
    g.refresh_from_db()
    assert (g.status, g.progress, g.worker) == (S.SUCCEEDED, 100, "w1")
    assert g.started_at and g.finished_at


def test_it_ignores_duplicates_and_late_events(generation: Generation) -> None:
    g = dispatched(generation)
    assert attempts.event_apply(ev(g, "progress", percent=60)) is not None
    assert attempts.event_apply(ev(g, "started")) is None  # arrived late: already running
    assert attempts.event_apply(ev(g, "progress", percent=30)) is not None
    attempts.event_apply(ev(g, "succeeded"))
    assert attempts.event_apply(ev(g, "succeeded")) is None
    assert attempts.event_apply(ev(g, "progress", percent=90)) is None
    g.refresh_from_db()
    assert (g.status, g.progress) == (S.SUCCEEDED, 100)


def test_it_never_moves_progress_backwards(generation: Generation) -> None:
    g = dispatched(generation)
    for p in (10, 50, 20):
        attempts.event_apply(ev(g, "progress", percent=p))
    g.refresh_from_db()
    assert g.progress == 50


def test_it_ignores_events_of_an_older_attempt(generation: Generation) -> None:
    g = dispatched(generation)
    Generation.objects.filter(pk=g.pk).update(status=S.QUEUED)
    g.refresh_from_db()
    dispatched(g)
    assert g.attempt == 2
    assert attempts.event_apply(ev(g, "failed", attempt=1, message="old")) is None
    attempts.event_apply(ev(g, "started"))
    g.refresh_from_db()
    assert g.status == S.RUNNING and not g.error_message


def test_it_records_a_failure_for_the_filmmaker_and_the_admin(generation: Generation) -> None:
    g = dispatched(generation)
    attempts.event_apply(ev(g, "failed", message="frames: must be 8k+1", detail="Traceback…"))
    g.refresh_from_db()
    assert (g.status, g.error_message, g.error_detail) == (S.FAILED, "frames: must be 8k+1", "Traceback…")


def test_it_ignores_malformed_events(generation: Generation) -> None:
    assert attempts.event_apply({"type": "progress"}) is None
    assert attempts.event_apply(ev(dispatched(generation), "exploded")) is None


def token_for(g: Generation) -> str:
    return uploads.upload_url(generation=g).rstrip("/").rsplit("/", 1)[1]


def test_it_stores_an_upload_as_a_take_with_its_metadata(generation: Generation, tmp_path: Path) -> None:
    g = dispatched(generation)
    data = make_video(tmp_path / "v.mp4", frames=9, width=64, height=48).read_bytes()
    take = uploads.take_store(token=token_for(g), filename="out.mp4", chunks=[data], content_type="video/mp4")
    assert (take.kind, take.size, take.width, take.height, take.frame_count) == (
        "video",
        len(data),
        64,
        48,
        9,
    )
    assert take.poster and take.file.read() == data


def test_it_replaces_a_retried_upload_of_the_same_file(generation: Generation, tmp_path: Path) -> None:
    g = dispatched(generation)
    one = make_video(tmp_path / "one.mp4", frames=5).read_bytes()
    two = make_video(tmp_path / "two.mp4", frames=9).read_bytes()
    uploads.take_store(token=token_for(g), filename="a.mp4", chunks=[one])
    uploads.take_store(token=token_for(g), filename="a.mp4", chunks=[two])
    assert Take.objects.get().file.read() == two


def test_it_types_an_upload_by_probing_it_and_refuses_anything_else(
    generation: Generation, tmp_path: Path
) -> None:
    g = dispatched(generation)
    video = make_video(tmp_path / "v.mp4").read_bytes()
    take = uploads.take_store(
        token=token_for(g), filename="page.html", chunks=[video], content_type="text/html"
    )
    assert (take.content_type, take.kind, take.filename) == ("video/mp4", "video", "page.mp4")
    with pytest.raises(uploads.UploadRefused) as exc:
        uploads.take_store(token=token_for(g), filename="a.txt", chunks=[b"<script>alert(1)</script>"])
    assert exc.value.status == 415


def test_it_refuses_an_upload_for_an_older_attempt(generation: Generation) -> None:
    g = dispatched(generation)
    old = token_for(g)
    Generation.objects.filter(pk=g.pk).update(status=S.QUEUED)
    g.refresh_from_db()
    dispatched(g)
    with pytest.raises(uploads.UploadRefused) as exc:
        uploads.take_store(token=old, filename="a.txt", chunks=[b"x"])
    assert exc.value.status == 409


def test_it_refuses_a_forged_or_expired_token(generation: Generation, settings) -> None:
    g = dispatched(generation)
    with pytest.raises(uploads.UploadRefused, match="not valid"):
        uploads.take_store(token=token_for(g) + "x", filename="a.txt", chunks=[b"x"])
    settings.UPLOAD_URL_MAX_AGE = -1
    with pytest.raises(uploads.UploadRefused, match="expired"):
        uploads.take_store(token=token_for(g), filename="a.txt", chunks=[b"x"])
