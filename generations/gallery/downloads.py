"""What a filmmaker takes home: their circled takes as one ZIP, a CSV of every generation of theirs,
and the contact sheet for printing."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.db.models import Prefetch
from django.utils.text import slugify

from accounts.models import User
from generations.files.csvfile import csv_lines
from generations.files.zips import takes_zip
from generations.gallery.selectors import Filters, Section, my_rounds, sections_of
from generations.models import Generation, Take

S = Generation.Status
CSV_COLUMNS = [
    "generation", "round", "template", "status", "created_at", "finished_at", "prompt", "seed", "params",
    "takes", "circled", "notes", "error",
]  # fmt: skip


def download_name(take: Take) -> str:
    g = take.generation
    seed = g.params.get("seed")
    return f"g{g.pk}-seed{seed}-{take.filename}" if seed is not None else f"g{g.pk}-{take.filename}"


def zip_entry_name(take: Take) -> str:
    """Round by round: `<round slug>-r<id>/<download name>`."""
    rnd = take.generation.round
    return f"{slugify(rnd.title) or 'round'}-r{rnd.pk}/{download_name(take)}"


def circled_zip(takes: list[Take]) -> Iterator[bytes]:
    return takes_zip(takes, entry_name=zip_entry_name)


def generations_csv(user: User) -> str:
    """Every generation of mine, one row each, with its takes, circles and notes."""
    generations = (
        Generation.objects.filter(owner=user)
        .select_related("round", "template")
        .prefetch_related(Prefetch("takes", queryset=Take.objects.order_by("pk")))
        .order_by("created_at", "pk")
    )
    return "".join(csv_lines(CSV_COLUMNS, (_row(g) for g in generations)))


def _row(g: Generation) -> list[object]:
    takes = g.current_takes() if g.status == S.SUCCEEDED else []
    return [
        g.pk,
        g.round.title,
        g.template.name,
        g.status,
        g.created_at.isoformat(),
        g.finished_at.isoformat() if g.finished_at else "",
        g.prompt,
        g.params.get("seed"),
        json.dumps(g.params, sort_keys=True),
        " ".join(t.filename for t in takes),
        " ".join(t.filename for t in takes if t.circled),
        " | ".join(t.note for t in takes if t.note),
        g.error_message,
    ]


def contact_sheet(user: User, filters: Filters) -> list[Section]:
    """My takes by round for printing: poster, prompt, seed, parameters. Three queries."""
    rounds = [r for r in my_rounds(user) if filters.round_id in (None, r.pk)]
    if not filters.newest:
        rounds.reverse()
    return [s for s in sections_of(user, rounds, filters) if s.takes]
