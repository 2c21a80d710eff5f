"""The life of an attempt: dispatched, running, and how it ends (a worker's event, or lost).

Every change is a compare-and-set on (generation, attempt, status): a duplicate event, a late event
after a terminal one, or an event of an older attempt matches no row and changes nothing. Each tells
the live pages itself once it commits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from generations.broker.jobs import job_retire
from generations.broker.messages import signal_cancel, wake
from generations.dispatch.uploads import upload_url
from generations.live import groups
from generations.models import Generation, Take
from generations.queue.services import takes_discard
from gpu_worker import protocol

log = logging.getLogger(__name__)

S = Generation.Status

# What a filmmaker reads on a card queued again by the system: one calm sentence. Why it happened
# goes to error_detail, for the admin and the live room.
REQUEUED_MESSAGE = "A GPU dropped out; your shot is queued again, it goes first."


def generation_dispatch(*, generation: Generation) -> bool:
    """queued → dispatched with a new attempt. False when someone else got there first."""
    now = timezone.now()
    n = Generation.objects.filter(pk=generation.pk, status=S.QUEUED, attempt=generation.attempt).update(
        status=S.DISPATCHED,
        attempt=F("attempt") + 1,
        dispatched_at=now,
        progress=0,
        progress_message="",
        requeued=False,
    )
    if n != 1:
        return False
    generation.refresh_from_db()
    groups.generation_changed(owner_id=generation.owner_id, generation_id=generation.pk)
    return True


def generation_requeue(*, generation_id: int, attempt: int, reason: str) -> bool:
    """dispatched → queued when the job never reached RQ (the enqueue failed)."""
    n = Generation.objects.filter(pk=generation_id, status=S.DISPATCHED, attempt=attempt).update(
        status=S.QUEUED, progress_message=reason[:200]
    )
    return n == 1


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


def attempt_lost(*, generation_id: int, attempt: int, reason: str) -> Generation | None:
    """The worker of this attempt is gone (or RQ lost the job): dispatch again, or give up
    after MAX_ATTEMPTS. The presumed-dead worker is told to stop in case it is alive."""
    g = Generation.objects.filter(pk=generation_id, attempt=attempt, status__in=Generation.IN_FLIGHT).first()
    if g is None:
        return None
    if attempt < settings.MAX_ATTEMPTS:
        changes: dict[str, Any] = {
            "status": S.QUEUED,
            "progress": 0,
            "progress_message": REQUEUED_MESSAGE,
            "requeued": True,
            "error_detail": f"Attempt {attempt} lost: {reason}",
        }
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
        takes_discard(Take.objects.filter(generation=g))
        groups.generation_changed(owner_id=g.owner_id, generation_id=g.pk, queue=True)
    try:
        signal_cancel(g.pk, attempt, why=protocol.CANCEL_LOST)
        job_retire(g.pk, attempt, why=f"lost: {reason}", cancelled=False)
    except redis.RedisError:
        pass
    log.warning("generation %s attempt %s lost: %s", g.pk, attempt, reason)
    g.refresh_from_db()
    return g


@dataclass(frozen=True)
class Applied:
    generation_id: int
    owner_id: int
    terminal: bool


def event_apply(event: dict[str, Any]) -> Applied | None:
    """Apply one worker event. Idempotent: a duplicate, a late event or one of an older attempt
    matches no row and changes nothing (returns None)."""
    kind = event.get("type")
    try:
        gid, attempt = int(event["generation_id"]), int(event["attempt"])
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring malformed event %r", event)
        return None
    if kind in (protocol.CANCELLED, protocol.PREVIEW):
        return None  # the cancel already happened here; previews are kept by the conductor
    apply = _APPLY.get(str(kind))
    if apply is None:
        log.warning("ignoring event of unknown type %r", kind)
        return None
    live = Generation.objects.filter(pk=gid, attempt=attempt, status__in=Generation.IN_FLIGHT)
    with transaction.atomic():
        if apply(live, event, attempt) != 1:
            return None
        owner_id, status = Generation.objects.values_list("owner_id", "status").get(pk=gid)
        groups.generation_changed(owner_id=owner_id, generation_id=gid)
    return Applied(generation_id=gid, owner_id=owner_id, terminal=status in Generation.TERMINAL)


def _worker(event: dict[str, Any]) -> str:
    return str(event.get("worker", ""))[:120]


def _started(live: Any, event: dict[str, Any], attempt: int) -> int:
    return live.filter(status=S.DISPATCHED).update(
        status=S.RUNNING, started_at=timezone.now(), worker=_worker(event)
    )


def _progress(live: Any, event: dict[str, Any], attempt: int) -> int:
    percent = min(max(float(event.get("percent") or 0), 0.0), 100.0)
    n = live.update(
        status=S.RUNNING,
        worker=_worker(event),
        # Out-of-order progress never moves the bar backwards.
        progress=Greatest(F("progress"), percent),
        progress_message=str(event.get("message", ""))[:200],
    )
    # started_at may be missing when "started" arrives after a progress event.
    live.filter(started_at__isnull=True).update(started_at=timezone.now())
    return n


def _succeeded(live: Any, event: dict[str, Any], attempt: int) -> int:
    return live.update(
        status=S.SUCCEEDED,
        progress=100,
        progress_message="",
        finished_at=timezone.now(),
        worker=_worker(event),
    )


def _failed(live: Any, event: dict[str, Any], attempt: int) -> int:
    message = str(event.get("message") or "The generation failed.")[:2000]
    detail = str(event.get("detail", ""))[:20000]
    retriable = bool(event.get("retriable", False))
    if retriable and attempt < settings.MAX_ATTEMPTS:
        # A system failure (the GPU ran out of memory, ComfyUI died...): try another attempt.
        n = live.update(
            status=S.QUEUED,
            progress=0,
            progress_message=REQUEUED_MESSAGE,
            requeued=True,
            error_detail=f"Attempt {attempt} failed: {message}\n{detail}"[:20000],
        )
        if n == 1:
            transaction.on_commit(wake)
        return n
    return live.update(
        status=S.FAILED,
        finished_at=timezone.now(),
        worker=_worker(event),
        error_message=message,
        error_detail=detail,
        retriable=retriable,
    )


_APPLY = {
    protocol.STARTED: _started,
    protocol.PROGRESS: _progress,
    protocol.SUCCEEDED: _succeeded,
    protocol.FAILED: _failed,
}
