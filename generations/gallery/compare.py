"""Compare 2 to 4 takes side by side: what differs between their settings, and what is the same."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.http import Http404

from accounts.models import User
from generations.gallery.selectors import shown_value, spec_labels
from generations.models import Take
from generations.queue.access import takes_visible_to
from workshop.inputs import int_or_none

COMPARE_MIN, COMPARE_MAX = 2, 4


class CompareRefused(Exception):
    pass


@dataclass(frozen=True)
class Row:
    label: str
    values: list[str]

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


@dataclass
class Comparison:
    takes: list[Take]
    rows: list[Row]

    @property
    def differing(self) -> list[Row]:
        return [r for r in self.rows if r.differs]

    @property
    def same(self) -> list[Row]:
        return [r for r in self.rows if not r.differs]


def compare(user: User, raw_ids: Iterable[str]) -> Comparison:
    """2 to 4 takes the user may see, in the order picked, and their parameters side by side."""
    ids = list(dict.fromkeys(n for n in map(int_or_none, raw_ids) if n is not None))
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        raise CompareRefused(f"Pick {COMPARE_MIN} to {COMPARE_MAX} takes to compare (you picked {len(ids)}).")
    found = {t.pk: t for t in takes_visible_to(user).filter(pk__in=ids)}
    if len(found) != len(ids):
        raise Http404("No such take")
    takes = [found[i] for i in ids]
    labels: dict[str, str] = {}
    for t in takes:  # the template's field order first, then anything else the params hold
        labels.update({k: v for k, v in spec_labels(t.generation.template).items() if k not in labels})
        labels.update({k: k.replace("_", " ").capitalize() for k in t.generation.params if k not in labels})
    rows = [
        Row("Filmmaker", [str(t.generation.owner) for t in takes]),
        Row("Round", [t.generation.round.title for t in takes]),
        Row("Template", [t.generation.template.name for t in takes]),
        *(
            Row(label, [shown_value(t.generation.params.get(k)) for t in takes])
            for k, label in labels.items()
        ),
        Row("Output", [f"{t.width or '?'}×{t.height or '?'}" for t in takes]),
        Row("Length", [f"{t.duration:.2f} s" if t.duration else "—" for t in takes]),
    ]
    return Comparison(takes=takes, rows=rows)
