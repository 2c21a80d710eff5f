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
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from generations.broker import jobs
from generations.broker.jobs import job_retire
from generations.broker.messages import signal_cancel, wake
from generations.dispatch.signing import job_sign
from generations.dispatch.uploads import upload_url
from generations.fleet.hosts import security_event_record
from generations.live import groups
from generations.models import Generation, GpuHost, SecurityEvent, Take
from generations.queue.services import takes_discard
from gpu_worker import protocol
from gpu_worker.signing import SIGNATURE_KWARG

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
        host=None,  # bound by the first "started" of whoever takes the new attempt
    )
    if n != 1:
        return False
    generation.refresh_from_db()
    groups.generation_changed(owner_id=generation.owner_id, generation_id=generation.pk)
    return True


def generation_requeue(*, generation_id: int, attempt: int, reason: str) -> bool:
    """dispatched → queued when the job never reached RQ (the enqueue failed)."""
    n = Generation.objects.filter(pk=generation_id, status=S.DISPATCHED, attempt=attempt).update(
        status=S.QUEUED, progress_message=reason[:200], host=None
    )
    return n == 1


def job_kwargs(*, generation: Generation) -> dict[str, Any]:
    """The plain-JSON arguments of the RQ job (see gpu_worker.protocol), signed for this job id."""
    kwargs: dict[str, Any] = {
        "generation_id": generation.pk,
        "attempt": generation.attempt,
        "template": generation.template.slug,
        "workflow": generation.workflow,
        "params": generation.params,
        "upload_url": upload_url(generation=generation),
        "timeout": generation.template.timeout_seconds,
    }
    job_id = protocol.job_id(generation.pk, generation.attempt)
    kwargs[SIGNATURE_KWARG] = job_sign(job_id=job_id, kwargs=kwargs)
    return kwargs


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
            "host": None,  # the next attempt is bound by whoever takes it
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


def event_apply(event: dict[str, Any], *, host: GpuHost | None = None) -> Applied | None:
    """Apply one worker event. Idempotent: a duplicate, a late event or one of an older attempt
    matches no row and changes nothing (returns None).

    ``host`` is the enrolled host whose stream the event came from (None: the shared stream, which
    only trusted users can write). Its first ``started`` (or ``progress``) binds the attempt to it,
    once its job has left the RQ queue (it took the job); after that only its events apply. An event
    for an attempt another host holds, or for one it has not taken, is refused and recorded."""
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
    if host is not None:
        held = Q(host=host)
        if kind in (protocol.STARTED, protocol.PROGRESS) and _taken(gid, attempt):
            held |= Q(host__isnull=True, status=S.DISPATCHED)
        live = live.filter(held)
    with transaction.atomic():
        if apply(live, event, attempt, host) != 1:
            if host is not None:
                _refuse_if_foreign(event, host, gid, attempt)
            return None
        owner_id, status = Generation.objects.values_list("owner_id", "status").get(pk=gid)
        groups.generation_changed(owner_id=owner_id, generation_id=gid)
    return Applied(generation_id=gid, owner_id=owner_id, terminal=status in Generation.TERMINAL)


def _taken(gid: int, attempt: int) -> bool:
    """Whether the attempt's RQ job has left its queue: a host claiming an attempt must have taken it
    (any host can read the queue and would otherwise claim jobs before the worker that takes them)."""
    queue_name = Generation.objects.filter(pk=gid).values_list("template__queue", flat=True).first()
    if queue_name is None:
        return False
    try:
        return jobs.queue(queue_name).get_job_position(protocol.job_id(gid, attempt)) is None
    except redis.RedisError:
        return False


def _refuse_if_foreign(event: dict[str, Any], host: GpuHost, gid: int, attempt: int) -> None:
    """Record an event no row matched when it was not just late: an attempt that does not exist yet,
    or one in flight that this host does not hold."""
    row = Generation.objects.filter(pk=gid).values("attempt", "host_id", "status").first()
    late = row is not None and (
        attempt < row["attempt"] or row["status"] not in Generation.IN_FLIGHT or row["host_id"] == host.pk
    )
    if not late:
        security_event_record(
            kind=SecurityEvent.Kind.FOREIGN_EVENT,
            host=host,
            generation_id=gid,
            attempt=attempt,
            detail=f"{event.get('type')} from {event.get('worker', '')} for an attempt it does not hold",
        )


def _worker(event: dict[str, Any]) -> str:
    return str(event.get("worker", ""))[:120]


def _holder(host: GpuHost | None) -> dict[str, Any]:
    return {} if host is None else {"host": host}


def _started(live: Any, event: dict[str, Any], attempt: int, host: GpuHost | None) -> int:
    return live.filter(status=S.DISPATCHED).update(
        status=S.RUNNING, started_at=timezone.now(), worker=_worker(event), **_holder(host)
    )


def _progress(live: Any, event: dict[str, Any], attempt: int, host: GpuHost | None) -> int:
    percent = min(max(float(event.get("percent") or 0), 0.0), 100.0)
    n = live.update(
        status=S.RUNNING,
        worker=_worker(event),
        # Out-of-order progress never moves the bar backwards.
        progress=Greatest(F("progress"), percent),
        progress_message=str(event.get("message", ""))[:200],
        **_holder(host),
    )
    # started_at may be missing when "started" arrives after a progress event.
    live.filter(started_at__isnull=True).update(started_at=timezone.now())
    return n


def _succeeded(live: Any, event: dict[str, Any], attempt: int, host: GpuHost | None) -> int:
    return live.update(
        status=S.SUCCEEDED,
        progress=100,
        progress_message="",
        finished_at=timezone.now(),
        worker=_worker(event),
    )


def _failed(live: Any, event: dict[str, Any], attempt: int, host: GpuHost | None) -> int:
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
            host=None,
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
