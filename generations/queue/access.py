"""Who may see what: rounds, generations and takes. Every page, action and socket asks here.

The take rule: its owner sees it, instructors and staff see every take, and other filmmakers see the
circled takes of a round whose gallery is shared (or which is closed). Lists show only takes that
count: of a generation that succeeded, from the attempt that succeeded."""

from __future__ import annotations

import functools
from typing import Any

from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404

from accounts.models import User
from generations.models import Generation, Round, Take, WorkflowTemplate
from workshop.rows import model_rows


def sees_everything(user: User) -> bool:
    return user.is_instructor or user.is_staff


# --- Rounds ----------------------------------------------------------------------------------


def rounds_visible_to(user: User) -> QuerySet[Round]:
    # Reads only `is_instructor`: template_offered compiles it once per value.
    qs = Round.objects.all()
    return qs if user.is_instructor else qs.exclude(status=Round.Status.DRAFT)


def round_current_for(user: User) -> Round | None:
    """The round a user lands on: the open one, else the latest they can see."""
    visible = rounds_visible_to(user)
    return visible.filter(status=Round.Status.OPEN).order_by("-opened_at", "-created_at").first() or (
        visible.order_by("-created_at").first()
    )


def round_for_user(user: User, pk: int) -> Round:
    """The round, 404 unless `user` may see it; with its templates read too."""
    rnd = rounds_visible_to(user).prefetch_related("templates").filter(pk=pk).first()
    if rnd is None:
        raise Http404("No such round")
    return rnd


def template_offered(user: User, round_id: int, template_id: int) -> WorkflowTemplate | None:
    """The template, if the round offers it and `user` may see the round (else None): one query,
    without reading the round (a submission reads it under its lock)."""
    sql, params = _offered_sql(user.is_instructor)
    params = tuple(round_id if p == _ROUND else template_id if p == _TEMPLATE else p for p in params)
    return next(iter(model_rows(WorkflowTemplate, sql, params)), None)


# Stand-ins for the ids in the compiled query: no row has them (ids are positive).
_ROUND, _TEMPLATE = -1_000_001, -1_000_002


@functools.cache
def _offered_sql(sees_drafts: bool) -> tuple[str, tuple[Any, ...]]:
    """template_offered's query, built by the ORM once per kind of viewer: every submission asks,
    twenty at once in a burst, and building it cost three times running it (0.6 of 0.9 ms)."""
    viewer = User(role=User.Role.INSTRUCTOR if sees_drafts else User.Role.FILMMAKER)
    rounds = rounds_visible_to(viewer).filter(pk=_ROUND)
    query = WorkflowTemplate.objects.filter(pk=_TEMPLATE, rounds__in=rounds)[:1].query
    sql, params = query.sql_with_params()
    assert params.count(_ROUND) == params.count(_TEMPLATE) == 1, params
    return sql, params


def is_shared(rnd: Round) -> bool:
    """Everyone sees the round's circled takes once the instructor shares it or closes the round."""
    return rnd.gallery_shared or rnd.status == Round.Status.CLOSED


# --- Generations -----------------------------------------------------------------------------


def with_takes(qs: QuerySet[Generation]) -> QuerySet[Generation]:
    return qs.select_related("template").prefetch_related(
        Prefetch("takes", queryset=Take.objects.order_by("pk"))
    )


def generation_for_user(user: User, pk: int) -> Generation:
    """The owner sees their generation; instructors and staff see all; anyone else gets 404."""
    qs = with_takes(Generation.objects.all())
    if not sees_everything(user):
        qs = qs.filter(owner=user)
    generation = qs.filter(pk=pk).first()
    if generation is None:
        raise Http404("No such generation")
    return generation


# --- Takes: the one rule ---------------------------------------------------------------------


def counting_takes() -> QuerySet[Take]:
    """Takes that count: of a generation that succeeded, from the attempt that succeeded."""
    return Take.objects.filter(
        generation__status=Generation.Status.SUCCEEDED, attempt=F("generation__attempt")
    )


def _with_generation(qs: QuerySet[Take]) -> QuerySet[Take]:
    # The resolved workflows (tens of kB of JSON each with ComfyUI) are never shown with a take.
    return qs.select_related("generation__round", "generation__template", "generation__owner").defer(
        "generation__workflow", "generation__error_detail", "generation__template__workflow"
    )


def current_takes() -> QuerySet[Take]:
    return _with_generation(counting_takes())


def _shared_q() -> Q:
    rnd = "generation__round__"
    shared = Q(**{f"{rnd}gallery_shared": True}) & ~Q(**{f"{rnd}status": Round.Status.DRAFT})
    return Q(circled=True) & (shared | Q(**{f"{rnd}status": Round.Status.CLOSED}))


def takes_visible_to(user: User) -> QuerySet[Take]:
    """My takes; the circled takes of shared (or closed) rounds; everything for instructors."""
    qs = _with_generation(Take.objects.all())
    if sees_everything(user):
        return qs
    counting = Q(generation__status=Generation.Status.SUCCEEDED, attempt=F("generation__attempt"))
    return qs.filter(Q(generation__owner=user) | (counting & _shared_q()))


def take_visible_to(user: User, pk: int) -> Take:
    take = takes_visible_to(user).filter(pk=pk).first()
    if take is None:
        raise Http404("No such take")
    return take


def take_owned_by(user: User, pk: int) -> Take:
    """Circling and notes are the filmmaker's own: anyone else (instructors too) gets 404."""
    take = current_takes().filter(pk=pk, generation__owner=user).first()
    if take is None:
        raise Http404("No such take")
    return take


def may_see_owner(user: User, rnd: Round, owner_id: int) -> bool:
    """Whether `user` may see `owner_id`'s circled takes in the round's gallery."""
    return owner_id == user.pk or is_shared(rnd) or sees_everything(user)
