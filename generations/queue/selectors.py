"""Reads of a filmmaker's queue and takes in a round, shared by the round page and its socket."""

from __future__ import annotations

import functools

from django.db.models import F, Prefetch, prefetch_related_objects

from accounts.models import User
from generations.models import Generation, Round, Take, WorkflowTemplate
from generations.queue.access import counting_takes, current_takes, with_takes
from workshop.rows import model_rows

# What a card never shows: resolved workflows are tens of kB of JSON each with ComfyUI, read on every
# push to every socket.
NOT_SHOWN = ("workflow", "error_detail", "template__workflow")


def generations_of(user: User, rnd: Round) -> list[Generation]:
    """A filmmaker's queue in a round, newest first; the takes of those that succeeded (the only
    cards that show takes: in a burst, no query for them)."""
    found = list(
        Generation.objects.filter(owner=user, round=rnd)
        .select_related("template")
        .defer(*NOT_SHOWN)
        .order_by("-created_at")
    )
    succeeded = [g for g in found if g.status == Generation.Status.SUCCEEDED]
    prefetch_related_objects(succeeded, Prefetch("takes", queryset=Take.objects.order_by("pk")))
    return found


def active_of(user: User, rnd: Round) -> list[Generation]:
    """A filmmaker's generations in a round that are not finished: running first, then those sent
    to a worker, then the waiting ones (the caller orders those by their place in line).

    A raw query: every submit answer and every queue push reads it, twenty at once in a burst, and
    building the ORM's query cost three times running it. The running ones' templates (their ETA
    reads them) in a second query, only when some run."""
    rank = {Generation.Status.RUNNING: 0, Generation.Status.DISPATCHED: 1, Generation.Status.QUEUED: 2}
    active = model_rows(
        Generation,
        f'SELECT {_card_columns()} FROM "{Generation._meta.db_table}" '
        "WHERE owner_id = %s AND round_id = %s AND status IN (%s, %s, %s)",
        [user.pk, rnd.pk, *rank],
    )
    found = sorted(active, key=lambda g: (rank[g.status], g.created_at))
    running = [g for g in found if g.status == Generation.Status.RUNNING]
    prefetch_related_objects(running, Prefetch("template", WorkflowTemplate.objects.defer("workflow")))
    return found


def waiting_of(user: User, rnd: Round) -> list[Generation]:
    """A filmmaker's waiting generations in a round, with only what a card's place in line and ETA
    read (the rest deferred): after a dispatch pass moves the line, every waiting filmmaker's page
    re-renders just those (studio.consumers), all at once in a burst."""
    return model_rows(
        Generation,
        f'SELECT id, status, progress_message FROM "{Generation._meta.db_table}" '
        "WHERE owner_id = %s AND round_id = %s AND status = %s",
        [user.pk, rnd.pk, Generation.Status.QUEUED],
    )


@functools.cache
def _card_columns() -> str:
    """Every column a card reads: all but the generation's own NOT_SHOWN."""
    hidden = {name for name in NOT_SHOWN if "__" not in name}
    fields = Generation._meta.concrete_fields
    return ", ".join(f'"{f.column}"' for f in fields if f.name not in hidden)


def finished_of(user: User, rnd: Round) -> list[Generation]:
    """A filmmaker's finished generations in a round (takes, failures, cancels), last finished first."""
    return list(
        with_takes(Generation.objects.filter(owner=user, round=rnd, status__in=Generation.TERMINAL))
        .defer(*NOT_SHOWN)
        .order_by(F("finished_at").desc(nulls_last=True), "-created_at")
    )


def takes_of(user: User, rnd: Round) -> list[Take]:
    """A filmmaker's takes in a round: only those of the attempt that succeeded."""
    return list(
        counting_takes()
        .filter(generation__owner=user, generation__round=rnd)
        .select_related("generation")
        .order_by("-created_at")
    )


def circled_takes_of(user: User, round_id: int | None = None) -> list[Take]:
    """A filmmaker's circled takes (of one round), round by round, oldest first."""
    qs = current_takes().filter(generation__owner=user, circled=True)
    if round_id:
        qs = qs.filter(generation__round_id=round_id)
    return list(qs.order_by("generation__round__created_at", "created_at", "pk"))


def round_circled_takes(rnd: Round) -> list[Take]:
    """Everyone's circled takes in a round, oldest first."""
    return list(current_takes().filter(generation__round=rnd, circled=True).order_by("created_at", "pk"))
