"""Rounds: created and edited by the instructor, and their lifecycle (draft → open ⇄ paused →
closed). Each transition is a compare-and-set on the status and tells the round's pages itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from generations.instructor.briefs import brief_image_add
from generations.instructor.workshop import PanelRefused, workshop_get
from generations.live import groups
from generations.models import Generation, Round, WorkflowTemplate
from generations.queue.services import generation_cancel

S = Generation.Status
R = Round.Status


def round_save(
    *,
    rnd: Round | None,
    title: str,
    brief: str,
    templates: Iterable[WorkflowTemplate],
    quota: int,
    circle_limit: int,
    gallery_shared: bool,
    images: Iterable[UploadedFile] = (),
) -> tuple[Round, list[str]]:
    """Create a round (a draft of the current workshop) or save an existing one, with new reference
    images. Returns the round and a message for each image that was refused."""
    with transaction.atomic():
        rnd = rnd or Round(workshop=workshop_get())
        was_shared = rnd.gallery_shared if rnd.pk else False
        rnd.title, rnd.brief, rnd.quota, rnd.circle_limit = title, brief, quota, circle_limit
        rnd.gallery_shared = gallery_shared
        if rnd.workshop_id is None:
            rnd.workshop = workshop_get()
        rnd.save()
        rnd.templates.set(templates)
    refused = []
    for upload in images:
        try:
            brief_image_add(rnd=rnd, upload=upload)
        except PanelRefused as exc:
            refused.append(str(exc))
    groups.round_changed(round_id=rnd.pk)
    if gallery_shared != was_shared:
        groups.round_gallery_changed(round_id=rnd.pk)  # open shared galleries show or hide at once
    return rnd, refused


def _transition(rnd: Round, *, to: str, allowed: tuple[str, ...], verb: str, **changes: Any) -> None:
    n = Round.objects.filter(pk=rnd.pk, status__in=allowed).update(status=to, **changes)
    rnd.refresh_from_db()
    if n != 1:
        state = rnd.get_status_display().lower()
        raise PanelRefused(f"The round “{rnd.title}” is {state}: it cannot be {verb}.")
    groups.round_changed(round_id=rnd.pk)


def round_open(*, rnd: Round) -> None:
    """Draft, paused or closed → open. The latest opened round is where filmmakers land."""
    now = timezone.now()
    # Opening a round opens its burst window (queue.window).
    _transition(
        rnd,
        to=R.OPEN,
        allowed=(R.DRAFT, R.PAUSED, R.CLOSED),
        verb="opened",
        opened_at=now,
        burst_opened_at=now,
        burst_closed_at=None,
    )


def round_pause(*, rnd: Round) -> None:
    """Open → paused: new submissions are refused (generation_create checks the status under the
    round's lock); jobs already queued or running go on."""
    _transition(rnd, to=R.PAUSED, allowed=(R.OPEN,), verb="paused")


def round_close_preview(rnd: Round) -> tuple[int, int]:
    """(queued, running): what closing the round would cancel now, and what would finish."""
    queued = Generation.objects.filter(round=rnd, status=S.QUEUED).count()
    return queued, Generation.objects.filter(round=rnd, status__in=Generation.IN_FLIGHT).count()


def round_close(*, rnd: Round) -> list[Generation]:
    """Open or paused → closed, then cancel its queued generations; running ones finish.
    Returns the generations it cancelled."""
    # The UPDATE needs the round's row lock, which generation_create holds while it checks the
    # status: a submission that saw the round open commits first, and none starts after; so
    # the list below is complete.
    _transition(rnd, to=R.CLOSED, allowed=(R.OPEN, R.PAUSED), verb="closed")
    queued = list(Generation.objects.filter(round=rnd, status=S.QUEUED).select_related("template"))
    return [g for g in queued if generation_cancel(generation=g)]
