"""Reads of the gallery: my takes round by round (paged, filtered), a round's shared gallery of
circled takes (paged by filmmaker), and each take's parameters as the tiles show them.

Only takes of the attempt that succeeded count, as on the round page; what a viewer may see is
decided by queue.access."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Q

from accounts.models import User
from generations.authoring.params import SpecError, parse_spec
from generations.models import Generation, Round, Take, WorkflowTemplate
from generations.queue.access import (
    counting_takes,
    current_takes,
    is_shared,
    may_see_owner,
    rounds_visible_to,
    sees_everything,
)
from workshop.inputs import int_or_none

S = Generation.Status
# A page of "my takes" holds whole rounds until it has at least this many tiles.
PAGE_TAKES = 24
# A page of the shared gallery holds this many filmmakers (each with their circled takes).
PAGE_OWNERS = 10


def spec_labels(template: WorkflowTemplate) -> dict[str, str]:
    try:
        return {p.name: p.label for p in parse_spec(template.param_spec)}
    except SpecError:
        return {}


def shown_value(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


def with_params(takes: Iterable[Take]) -> list[Take]:
    """Give each take `shown_params`: (name, label, value) in its template's field order (a jsonb
    column keeps its own key order), without the prompt, which tiles show on its own."""
    specs: dict[int, dict[str, str]] = {}
    result = list(takes)
    for t in result:
        template = t.generation.template
        labels = specs.setdefault(template.pk, spec_labels(template))
        params = t.generation.params
        names = [n for n in labels if n in params] + [n for n in params if n not in labels]
        t.shown_params = [(n, labels.get(n, n), shown_value(params[n])) for n in names if n != "prompt"]  # type: ignore[attr-defined]
    return result


# --- My takes -------------------------------------------------------------------------------


# --- My takes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    round_id: int | None = None
    circled: bool = False
    newest: bool = True

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> Filters:
        return cls(
            round_id=int_or_none(query.get("round") or ""),
            circled=query.get("circled") == "1",
            newest=query.get("sort") != "old",
        )

    def query(self, **extra: Any) -> str:
        q: dict[str, Any] = {}
        if self.round_id:
            q["round"] = self.round_id
        if self.circled:
            q["circled"] = 1
        if not self.newest:
            q["sort"] = "old"
        q.update({k: v for k, v in extra.items() if v not in (None, "")})
        return urlencode(q)

    @property
    def order(self) -> tuple[str, str]:
        return ("-created_at", "-pk") if self.newest else ("created_at", "pk")


@dataclass
class Section:
    """One round of my takes: a full-state fragment, re-rendered whole on a live update."""

    round: Round
    takes: list[Take]
    total: int
    circled: int


@dataclass
class MyPage:
    rounds: list[Round]
    sections: list[Section]
    next_after: int | None


def my_rounds(user: User) -> list[Round]:
    """The rounds of my gallery: those I generated in, and any open one (new takes land there)."""
    mine = Exists(Generation.objects.filter(owner=user, round=OuterRef("pk")))
    return list(
        rounds_visible_to(user).filter(mine | Q(status=Round.Status.OPEN)).order_by("-created_at", "-pk")
    )


def _counts(user: User, round_ids: list[int]) -> dict[int, tuple[int, int]]:
    rows = (
        counting_takes()
        .filter(generation__owner=user, generation__round_id__in=round_ids)
        .values("generation__round_id")
        .annotate(n=Count("pk"), c=Count("pk", filter=Q(circled=True)))
    )
    return {r["generation__round_id"]: (r["n"], r["c"]) for r in rows}


def _sections(
    user: User, rounds: list[Round], filters: Filters, counts: dict[int, tuple[int, int]]
) -> list[Section]:
    qs = current_takes().filter(generation__owner=user, generation__round__in=rounds)
    if filters.circled:
        qs = qs.filter(circled=True)
    by_round: dict[int, list[Take]] = {r.pk: [] for r in rounds}
    for take in with_params(qs.order_by(*filters.order)):
        by_round[take.generation.round_id].append(take)
    return [Section(r, by_round[r.pk], *counts.get(r.pk, (0, 0))) for r in rounds]


def sections_of(user: User, rounds: list[Round], filters: Filters) -> list[Section]:
    return _sections(user, rounds, filters, _counts(user, [r.pk for r in rounds]))


def my_gallery(user: User, filters: Filters, *, after: int | None = None) -> MyPage:
    """A page of my takes, whole rounds at a time (newest round first unless sorted oldest);
    four queries however many takes there are."""
    rounds = my_rounds(user)
    shown = [r for r in rounds if filters.round_id in (None, r.pk)]
    if not filters.newest:
        shown.reverse()
    if after is not None:
        ids = [r.pk for r in shown]
        shown = shown[ids.index(after) + 1 :] if after in ids else []
    counts = _counts(user, [r.pk for r in shown])
    page: list[Round] = []
    tiles = 0
    for rnd in shown:
        if page and tiles >= PAGE_TAKES:
            break
        page.append(rnd)
        total, circled = counts.get(rnd.pk, (0, 0))
        tiles += circled if filters.circled else total
    more = len(page) < len(shown)
    return MyPage(
        rounds=rounds,
        sections=_sections(user, page, filters, counts),
        next_after=page[-1].pk if more else None,
    )


def my_section(user: User, round_id: int, filters: Filters, *, takes: bool = True) -> Section | None:
    """One round of my takes as it is now (for a live update), or None if I cannot see it.
    Without `takes`, only its counts (for the section's heading)."""
    rnd = rounds_visible_to(user).filter(pk=round_id).first()
    if rnd is None:
        return None
    counts = _counts(user, [rnd.pk])
    if not takes:
        return Section(rnd, [], *counts.get(rnd.pk, (0, 0)))
    return _sections(user, [rnd], filters, counts)[0]


# --- The round's shared gallery ----------------------------------------------------------------


@dataclass
class OwnerSection:
    """One filmmaker's circled takes in a round; rendered even when empty, so that a first
    circle can appear live in it."""

    round: Round
    owner: User
    takes: list[Take]


@dataclass
class SharedPage:
    round: Round
    shared: bool
    everyone: bool
    sections: list[OwnerSection]
    next_after: str | None


def _owner_sections(rnd: Round, owners: list[User]) -> list[OwnerSection]:
    qs = current_takes().filter(generation__round=rnd, generation__owner__in=owners, circled=True)
    by_owner: dict[int, list[Take]] = {u.pk: [] for u in owners}
    for take in with_params(qs.order_by("created_at", "pk")):
        by_owner[take.generation.owner_id].append(take)
    return [OwnerSection(rnd, u, by_owner[u.pk]) for u in owners]


def shared_gallery(user: User, rnd: Round, *, after: str | None = None) -> SharedPage:
    """The round's circled takes, attributed: everyone's when the round is shared (or to an
    instructor), otherwise only the viewer's own. Pages of PAGE_OWNERS filmmakers."""
    everyone = is_shared(rnd) or sees_everything(user)
    if everyone:
        succeeded = Generation.objects.filter(owner=OuterRef("pk"), round=rnd, status=S.SUCCEEDED)
        qs = User.objects.filter(Exists(succeeded)).order_by("username")
        if after:
            qs = qs.filter(username__gt=after)
        owners = list(qs[: PAGE_OWNERS + 1])
        more = len(owners) > PAGE_OWNERS
        owners = owners[:PAGE_OWNERS]
    else:
        owners, more = ([user] if not after else []), False
    return SharedPage(
        round=rnd,
        shared=is_shared(rnd),
        everyone=everyone,
        sections=_owner_sections(rnd, owners),
        next_after=owners[-1].username if more else None,
    )


def owner_section(user: User, rnd: Round, owner_id: int) -> OwnerSection | None:
    """One filmmaker's section as `user` may see it now, or None."""
    if not may_see_owner(user, rnd, owner_id):
        return None
    owner = user if owner_id == user.pk else User.objects.filter(pk=owner_id).first()
    return _owner_sections(rnd, [owner])[0] if owner else None
