"""Every state change of rounds, generations and takes. Views, consumers, the
conductor and tests call these; each transition is a compare-and-set on status
and attempt, so a duplicate or late event changes nothing."""

from __future__ import annotations

import logging
import mimetypes
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from gpu_worker import protocol

from . import broker, media, selectors
from .models import Generation, QuotaTopUp, Round, Take, WorkflowTemplate
from .params import parse_spec, resolve_workflow

log = logging.getLogger(__name__)

S = Generation.Status
UPLOAD_SALT = "generations.upload"


class SubmissionRefused(Exception):
    """A submission that must not create a generation; the message is for the filmmaker."""


class UploadRefused(Exception):
    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


# --- Generations ---------------------------------------------------------------------------


def generation_create(
    *,
    owner: User,
    round_id: int,
    template: WorkflowTemplate,
    params: dict[str, Any],
    submit_token: uuid.UUID | None = None,
    priority: bool = False,
) -> Generation:
    """Create a queued generation from already validated params.

    A `submit_token` seen before returns the generation it created (a double click or a
    retried POST creates one generation). Filmmakers are held to the round's quota."""
    if submit_token is not None:
        existing = Generation.objects.filter(submit_token=submit_token, owner=owner).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            # Lock the round: a concurrent pause/close, or a second submission of the same
            # filmmaker counting against the quota, waits for us.
            rnd = Round.objects.select_for_update().filter(pk=round_id).first()
            if rnd is None:
                raise SubmissionRefused("This round does not exist.")
            if rnd.status != Round.Status.OPEN:
                raise SubmissionRefused(
                    f"The round “{rnd.title}” is {rnd.get_status_display().lower()}: no new generations."
                )
            if not rnd.templates.filter(pk=template.pk).exists():
                raise SubmissionRefused("This template is not offered in this round.")
            if not owner.is_instructor:
                quota = selectors.quota_for(owner, rnd)
                if quota.left <= 0:
                    raise SubmissionRefused(
                        f"You have 0 generations left in this round: you have used all {quota.total}. "
                        "Cancelled and failed-by-the-system generations don't count; "
                        "ask the instructor for more."
                    )
            workflow = resolve_workflow(template.workflow, parse_spec(template.param_spec), params)
            generation = Generation.objects.create(
                owner=owner,
                round=rnd,
                template=template,
                params=params,
                workflow=workflow,
                submit_token=submit_token,
                priority=priority and owner.is_instructor,
            )
            transaction.on_commit(_wake_conductor)
    except IntegrityError:
        # The same token raced us in another request; it won.
        if submit_token is None:
            raise
        return Generation.objects.get(submit_token=submit_token, owner=owner)
    log.info("generation %s queued for %s", generation.pk, owner)
    return generation


def quota_top_up(*, round: Round, filmmaker: User, amount: int, by: User) -> QuotaTopUp:
    if amount <= 0:
        raise ValueError("A top-up adds at least one generation.")
    return QuotaTopUp.objects.create(round=round, filmmaker=filmmaker, amount=amount, granted_by=by)


def generation_cancel(*, generation: Generation) -> bool:
    """Cancel from any state that has not finished. Queued: at once. Dispatched: also taken
    out of RQ. Running: the worker is told through Redis and interrupts its backend. Takes
    of the attempt are removed, so a cancelled generation never shows one."""
    now = timezone.now()
    with transaction.atomic():
        current = Generation.objects.select_for_update().filter(pk=generation.pk).first()
        if current is None or current.status in Generation.TERMINAL:
            return False
        previous, attempt = current.status, current.attempt
        Generation.objects.filter(pk=current.pk).update(
            status=S.CANCELLED, finished_at=now, progress_message=""
        )
        # An upload that finished just before us must not survive as a take.
        _delete_takes(Take.objects.filter(generation=current))
    if previous in Generation.IN_FLIGHT:
        try:
            broker.signal_cancel(current.pk, attempt)
            if previous == S.DISPATCHED:
                broker.remove_job(current.template.queue, current.pk, attempt)
        except redis.RedisError:
            # The worker's upload is refused and its events ignored all the same.
            log.warning("could not signal the cancel of generation %s", current.pk, exc_info=True)
    generation.refresh_from_db()
    log.info("generation %s cancelled (was %s)", generation.pk, previous)
    return True


def _delete_takes(takes: Iterable[Take]) -> None:
    for take in takes:
        take.file.delete(save=False)
        if take.poster:
            take.poster.delete(save=False)
        if take.thumbnail:
            take.thumbnail.delete(save=False)
        take.delete()


def generation_retry(*, generation: Generation) -> bool:
    """failed → queued, same parameters, when the failure was the system's (not validation)."""
    if generation.status != S.FAILED or generation.retriable is False:
        raise SubmissionRefused("Only a generation that failed for a system reason can be retried.")
    with transaction.atomic():
        rnd = Round.objects.select_for_update().get(pk=generation.round_id)
        if rnd.status != Round.Status.OPEN:
            raise SubmissionRefused(f"The round “{rnd.title}” is not open: it cannot be retried now.")
        # The failure did not count; the retry does.
        if not generation.owner.is_instructor and selectors.quota_for(generation.owner, rnd).left <= 0:
            raise SubmissionRefused("You have 0 generations left in this round, so it cannot be retried.")
        n = Generation.objects.filter(pk=generation.pk, status=S.FAILED, attempt=generation.attempt).update(
            status=S.QUEUED,
            error_message="",
            error_detail="",
            retriable=None,
            progress=0,
            progress_message="",
            finished_at=None,
            started_at=None,
        )
        if n == 1:
            transaction.on_commit(_wake_conductor)
    generation.refresh_from_db()
    return n == 1


def attempt_lost(*, generation_id: int, attempt: int, reason: str) -> Generation | None:
    """The worker of this attempt is gone (or RQ lost the job): dispatch again, or give up
    after MAX_ATTEMPTS. The presumed-dead worker is told to stop in case it is alive."""
    g = Generation.objects.filter(pk=generation_id, attempt=attempt, status__in=Generation.IN_FLIGHT).first()
    if g is None:
        return None
    if attempt < settings.MAX_ATTEMPTS:
        changes: dict[str, Any] = {"status": S.QUEUED, "progress": 0, "progress_message": reason[:200]}
    else:
        changes = {
            "status": S.FAILED,
            "finished_at": timezone.now(),
            "retriable": True,
            "error_message": f"The GPU worker was lost {attempt} times; you can retry.",
            "error_detail": reason,
        }
    with transaction.atomic():
        n = Generation.objects.filter(pk=g.pk, attempt=attempt, status__in=Generation.IN_FLIGHT).update(
            **changes
        )
        if n != 1:
            return None
        # Whatever the lost attempt delivered is not a take: only the next attempt's will be.
        _delete_takes(Take.objects.filter(generation=g))
    try:
        broker.signal_cancel(g.pk, attempt)
    except redis.RedisError:
        pass
    log.warning("generation %s attempt %s lost: %s", g.pk, attempt, reason)
    g.refresh_from_db()
    return g


def _wake_conductor() -> None:
    from .conductor import wake

    wake()


def generation_dispatch(*, generation: Generation) -> bool:
    """queued → dispatched with a new attempt. False when someone else got there first."""
    now = timezone.now()
    n = Generation.objects.filter(pk=generation.pk, status=S.QUEUED, attempt=generation.attempt).update(
        status=S.DISPATCHED, attempt=F("attempt") + 1, dispatched_at=now, progress=0, progress_message=""
    )
    if n != 1:
        return False
    generation.refresh_from_db()
    return True


def generation_requeue(*, generation_id: int, attempt: int, reason: str) -> bool:
    """dispatched → queued when the job never reached RQ (the enqueue failed)."""
    n = Generation.objects.filter(pk=generation_id, status=S.DISPATCHED, attempt=attempt).update(
        status=S.QUEUED, progress_message=reason[:200]
    )
    return n == 1


def upload_url(*, generation: Generation) -> str:
    """A signed URL that accepts this generation's outputs for this attempt only."""
    token = signing.dumps({"g": generation.pk, "a": generation.attempt}, salt=UPLOAD_SALT, compress=True)
    return settings.PUBLIC_BASE_URL + reverse("take-upload", args=[token, "x"])[:-1]


def job_kwargs(*, generation: Generation) -> dict[str, Any]:
    """The plain-JSON arguments of the RQ job (see gpu_worker.protocol)."""
    return {
        "generation_id": generation.pk,
        "attempt": generation.attempt,
        "template": generation.template.slug,
        "workflow": generation.workflow,
        "params": generation.params,
        "upload_url": upload_url(generation=generation),
        "timeout": generation.template.timeout_seconds,
    }


# --- Worker events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    generation_id: int
    owner_id: int
    terminal: bool


def event_apply(event: dict[str, Any]) -> Applied | None:
    """Apply one worker event. Idempotent: a duplicate, a late event or one of an older
    attempt matches no row and changes nothing (returns None)."""
    kind = event.get("type")
    try:
        gid, attempt = int(event["generation_id"]), int(event["attempt"])
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring malformed event %r", event)
        return None
    live = Generation.objects.filter(pk=gid, attempt=attempt, status__in=Generation.IN_FLIGHT)
    now = timezone.now()
    worker = str(event.get("worker", ""))[:120]
    terminal = False
    if kind == protocol.STARTED:
        n = live.filter(status=S.DISPATCHED).update(status=S.RUNNING, started_at=now, worker=worker)
    elif kind == protocol.PROGRESS:
        percent = min(max(float(event.get("percent") or 0), 0.0), 100.0)
        n = live.update(
            status=S.RUNNING,
            worker=worker,
            # Out-of-order progress never moves the bar backwards.
            progress=Greatest(F("progress"), percent),
            progress_message=str(event.get("message", ""))[:200],
        )
        # started_at may be missing when "started" arrives after a progress event.
        live.filter(started_at__isnull=True).update(started_at=now)
    elif kind == protocol.SUCCEEDED:
        n = live.update(status=S.SUCCEEDED, progress=100, progress_message="", finished_at=now, worker=worker)
        terminal = True
    elif kind == protocol.FAILED:
        message = str(event.get("message") or "The generation failed.")[:2000]
        detail = str(event.get("detail", ""))[:20000]
        retriable = bool(event.get("retriable", False))
        if retriable and attempt < settings.MAX_ATTEMPTS:
            # A system failure (the GPU ran out of memory, ComfyUI died...): try another attempt.
            n = live.update(
                status=S.QUEUED,
                progress=0,
                progress_message=f"Retrying: {message}"[:200],
                error_detail=detail,
            )
            if n == 1:
                transaction.on_commit(_wake_conductor)
        else:
            n = live.update(
                status=S.FAILED,
                finished_at=now,
                worker=worker,
                error_message=message,
                error_detail=detail,
                retriable=retriable,
            )
            terminal = True
    elif kind in (protocol.CANCELLED, "preview"):
        return None  # the cancel already happened here; previews are not stored yet
    else:
        log.warning("ignoring event of unknown type %r", kind)
        return None
    if n != 1:
        return None
    owner_id = Generation.objects.values_list("owner_id", flat=True).get(pk=gid)
    return Applied(generation_id=gid, owner_id=owner_id, terminal=terminal)


# --- Takes ---------------------------------------------------------------------------------


def upload_token_verify(token: str) -> tuple[int, int]:
    try:
        data = signing.loads(token, salt=UPLOAD_SALT, max_age=settings.UPLOAD_URL_MAX_AGE)
        return int(data["g"]), int(data["a"])
    except signing.SignatureExpired:
        raise UploadRefused("This upload URL has expired.") from None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise UploadRefused("This upload URL is not valid.") from None


def _kind_for(content_type: str) -> str:
    top = content_type.split("/", 1)[0]
    return top if top in (Take.Kind.VIDEO, Take.Kind.IMAGE, Take.Kind.AUDIO) else Take.Kind.OTHER


def take_store(*, token: str, filename: str, chunks: Iterable[bytes], content_type: str = "") -> Take:
    """Store one output file streamed by a worker and record it as a Take.

    Re-uploading the same file for the same attempt replaces it (a retried PUT)."""
    gid, attempt = upload_token_verify(token)
    filename = Path(filename).name
    if not filename or filename.startswith("."):
        raise UploadRefused("A file name is required.", status=400)
    if not Generation.objects.filter(pk=gid, attempt=attempt, status__in=Generation.IN_FLIGHT).exists():
        # Cancelled, already finished, or superseded by a newer attempt.
        raise UploadRefused("This generation no longer accepts uploads for this attempt.", status=409)
    content_type = (
        content_type.split(";")[0].strip() or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    )

    with tempfile.NamedTemporaryFile(suffix=Path(filename).suffix) as tmp:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > settings.MAX_TAKE_BYTES:
                raise UploadRefused("The file is larger than this workshop accepts.", status=413)
            tmp.write(chunk)
        tmp.flush()
        info = media.probe(Path(tmp.name), content_type)
        # The gallery grid's small JPEG, made once here like the poster (a few ms).
        thumb = media.thumbnail(Path(tmp.name), content_type)
        tmp.seek(0)
        with transaction.atomic():
            # Checked again under the row lock that cancel takes: a take never outlives a cancel.
            generation = (
                Generation.objects.select_for_update()
                .filter(pk=gid, attempt=attempt, status__in=Generation.IN_FLIGHT)
                .first()
            )
            if generation is None:
                raise UploadRefused("This generation no longer accepts uploads for this attempt.", status=409)
            take = Take.objects.filter(generation=generation, attempt=attempt, filename=filename).first()
            if take is None:
                take = Take(generation=generation, attempt=attempt, filename=filename)
            else:  # a retried PUT of the same file replaces it
                take.file.delete(save=False)
                if take.poster:
                    take.poster.delete(save=False)
                if take.thumbnail:
                    take.thumbnail.delete(save=False)
            take.kind = _kind_for(content_type)
            take.content_type = content_type
            take.size = size
            take.width, take.height = info.width, info.height
            take.duration, take.frame_count = info.duration, info.frame_count
            take.file.save(filename, File(tmp), save=False)
            if info.poster_png:
                take.poster.save(
                    f"{Path(filename).stem}-poster.png", ContentFile(info.poster_png), save=False
                )
            if thumb:
                take.thumbnail.save(f"{Path(filename).stem}-thumb.jpg", ContentFile(thumb), save=False)
            take.save()
    return take
