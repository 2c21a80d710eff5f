"""Reads shared by pages, consumers and the conductor. Access rules live here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import F, Prefetch, Q, QuerySet, Sum
from django.http import Http404

from accounts.models import User

from .models import Generation, QuotaTopUp, Round, Take


def rounds_visible_to(user: User) -> QuerySet[Round]:
    qs = Round.objects.all()
    return qs if user.is_instructor else qs.exclude(status=Round.Status.DRAFT)


def round_current_for(user: User) -> Round | None:
    """The round a user lands on: the open one, else the latest they can see."""
    visible = rounds_visible_to(user)
    return visible.filter(status=Round.Status.OPEN).order_by("-opened_at", "-created_at").first() or (
        visible.order_by("-created_at").first()
    )


def round_for_user(user: User, pk: int) -> Round:
    rnd = rounds_visible_to(user).prefetch_related("templates").filter(pk=pk).first()
    if rnd is None:
        raise Http404("No such round")
    return rnd


def _with_takes(qs: QuerySet[Generation]) -> QuerySet[Generation]:
    return qs.select_related("template").prefetch_related(
        Prefetch("takes", queryset=Take.objects.order_by("pk"))
    )


def generations_of(user: User, rnd: Round) -> QuerySet[Generation]:
    """A filmmaker's queue in a round, newest first."""
    return _with_takes(Generation.objects.filter(owner=user, round=rnd)).order_by("-created_at")


def generation_for_user(user: User, pk: int) -> Generation:
    """The owner sees their generation; instructors and staff see all; anyone else gets 404."""
    qs = _with_takes(Generation.objects.all())
    if not (user.is_instructor or user.is_staff):
        qs = qs.filter(owner=user)
    generation = qs.filter(pk=pk).first()
    if generation is None:
        raise Http404("No such generation")
    return generation


def takes_of(user: User, rnd: Round) -> list[Take]:
    """A filmmaker's takes in a round: only those of the attempt that succeeded."""
    return list(
        Take.objects.filter(
            generation__owner=user,
            generation__round=rnd,
            generation__status=Generation.Status.SUCCEEDED,
            attempt=F("generation__attempt"),
        )
        .select_related("generation")
        .order_by("-created_at")
    )


def take_for_user(user: User, pk: int) -> Take:
    qs = Take.objects.select_related("generation")
    if not (user.is_instructor or user.is_staff):
        qs = qs.filter(generation__owner=user)
    take = qs.filter(pk=pk).first()
    if take is None:
        raise Http404("No such take")
    return take


@dataclass(frozen=True)
class Quota:
    total: int
    used: int

    @property
    def left(self) -> int:
        return max(self.total - self.used, 0)


def quota_for(user: User, rnd: Round) -> Quota:
    """Generations a filmmaker may still submit in a round. Cancelled before they started, and
    failed for a system reason, don't count."""
    extra = QuotaTopUp.objects.filter(round=rnd, filmmaker=user).aggregate(n=Sum("amount"))["n"] or 0
    free = Q(status=Generation.Status.CANCELLED, started_at__isnull=True) | Q(
        status=Generation.Status.FAILED, retriable=True
    )
    used = Generation.objects.filter(owner=user, round=rnd).exclude(free).count()
    return Quota(total=rnd.quota + extra, used=used)


def with_estimates(generations: Iterable[Generation]) -> list[Generation]:
    """Attach `estimate` (position and ETA, or None) to each generation for its job card, and
    `preview_ts` to running ones that have a preview frame."""
    from . import broker, eta

    items = list(generations)
    queued = [g for g in items if g.status == Generation.Status.QUEUED]
    found = eta.estimates(broker.connection(), queued=queued) if queued else {}
    for g in items:
        g.estimate = found.get(g.pk)  # type: ignore[attr-defined]
    return with_previews(items)


def with_previews(generations: list[Generation]) -> list[Generation]:
    from . import broker

    running = [g for g in generations if g.status == Generation.Status.RUNNING]
    found = broker.previews([(g.pk, g.attempt) for g in running])
    for g in running:
        g.preview_ts = found[g.pk]["ts"] if g.pk in found else None  # type: ignore[attr-defined]
    return generations


def queue_context(user: User, rnd: Round) -> dict[str, object]:
    """What the "my queue" partial needs: the cards (with positions and ETAs) and the quota."""
    return {
        "generations": with_estimates(generations_of(user, rnd)),
        "quota": None if user.is_instructor else quota_for(user, rnd),
        "round": rnd,
    }
