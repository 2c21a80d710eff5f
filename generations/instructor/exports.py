"""The instructor's exports: every generation as a CSV (parameters, durations, worker, cost), and
each filmmaker's circled takes as a ZIP."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django.utils.text import get_valid_filename, slugify

from accounts.models import User
from generations.files.csvfile import csv_lines
from generations.files.zips import takes_zip
from generations.fleet.costs import GenerationPricer, gpu_seconds_of
from generations.models import Generation, Take
from generations.queue.access import counting_takes

CSV_COLUMNS = [
    "generation", "round", "filmmaker", "name", "template", "status", "priority", "attempts", "worker",
    "submitted_at", "started_at", "finished_at", "wait_seconds", "gpu_seconds", "cost", "prompt", "seed",
    "params", "takes", "circled", "error",
]  # fmt: skip


def exports_people() -> list[tuple[User, int]]:
    """Filmmakers (and whoever else has circled takes) with their circled counts."""
    counts = Counter(
        dict(
            counting_takes()
            .filter(circled=True)
            .values("generation__owner_id")
            .annotate(n=Count("id"))
            .values_list("generation__owner_id", "n")
        )
    )
    people = User.objects.filter(Q(role=User.Role.FILMMAKER) | Q(pk__in=counts)).order_by("username")
    return [(u, counts[u.pk]) for u in people]


def zip_entry_name(take: Take) -> str:
    """Round by round: `<round slug>-<id>/g<generation>-<file name>`."""
    rnd = take.generation.round
    return (
        f"{slugify(rnd.title) or 'round'}-{rnd.pk}/g{take.generation_id}-{get_valid_filename(take.filename)}"
    )


def circled_zip(takes: Iterable[Take]) -> Iterator[bytes]:
    """A filmmaker's circled takes (queue.selectors.circled_takes_of), across the rounds."""
    return takes_zip(takes, entry_name=zip_entry_name)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def generations_csv(qs: QuerySet[Generation] | None = None) -> Iterator[bytes]:
    """Every generation (oldest first) with its parameters, durations, worker and cost, one row
    at a time (the cost as fleet.costs prices a generation's GPU time)."""
    pricer = GenerationPricer()
    now = timezone.now()
    current = Q(takes__attempt=F("attempt"))
    rows = (
        (qs if qs is not None else Generation.objects.all())
        .select_related("round", "owner", "template")
        .annotate(
            n_takes=Count("takes", filter=current),
            n_circled=Count("takes", filter=current & Q(takes__circled=True)),
        )
        .order_by("created_at", "pk")
    )
    lines = csv_lines(CSV_COLUMNS, (_row(g, pricer, now) for g in rows.iterator(chunk_size=500)), bom=True)
    return (line.encode() for line in lines)


def _row(g: Generation, pricer: GenerationPricer, now: datetime) -> list[object]:
    gpu = gpu_seconds_of(g, now)
    wait = (g.started_at - g.created_at).total_seconds() if g.started_at else None
    return [
        g.pk,
        g.round.title,
        g.owner.username,
        g.owner.get_full_name(),
        g.template.slug,
        g.status,
        "yes" if g.priority else "",
        g.attempt,
        g.worker,
        _iso(g.created_at),
        _iso(g.started_at),
        _iso(g.finished_at),
        f"{wait:.1f}" if wait is not None else "",
        f"{gpu:.1f}",
        f"{pricer.cost(g, gpu):.4f}",
        g.prompt,
        g.params.get("seed", ""),
        json.dumps(g.params, sort_keys=True),
        g.n_takes,  # type: ignore[attr-defined]
        g.n_circled,  # type: ignore[attr-defined]
        g.error_message,
    ]
