"""How many generations a filmmaker may still submit in a round."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from accounts.models import User
from generations.models import Generation, QuotaTopUp, Round


@dataclass(frozen=True)
class Quota:
    total: int
    used: int

    @property
    def left(self) -> int:
        return max(self.total - self.used, 0)


# Cancelled before they started, and failed for a system reason: these don't count.
FREE = Q(status=Generation.Status.CANCELLED, started_at__isnull=True) | Q(
    status=Generation.Status.FAILED, retriable=True
)


def quota_for(user: User, rnd: Round) -> Quota:
    extra = QuotaTopUp.objects.filter(round=rnd, filmmaker=user).aggregate(n=Sum("amount"))["n"] or 0
    used = Generation.objects.filter(owner=user, round=rnd).exclude(FREE).count()
    return Quota(total=rnd.quota + extra, used=used)


def counts(g: Generation) -> bool:
    """FREE, in Python: whether `g` counts against the quota."""
    free = (g.status == Generation.Status.CANCELLED and g.started_at is None) or (
        g.status == Generation.Status.FAILED and g.retriable is True
    )
    return not free


def quota_of(user: User, rnd: Round, generations: Iterable[Generation]) -> Quota:
    """quota_for when the filmmaker's generations in the round are read already (the "my queue"
    fragment shows them): one query, for the top-ups."""
    extra = QuotaTopUp.objects.filter(round=rnd, filmmaker=user).aggregate(n=Sum("amount"))["n"] or 0
    return Quota(total=rnd.quota + extra, used=sum(1 for g in generations if counts(g)))


def quotas_for(user_ids: Iterable[int], rnd: Round) -> dict[int, Quota]:
    """quota_for of many filmmakers in two queries (the live room shows everyone's)."""
    ids = list(user_ids)
    extra = dict(
        QuotaTopUp.objects.filter(round=rnd, filmmaker_id__in=ids)
        .values("filmmaker_id")
        .annotate(n=Sum("amount"))
        .values_list("filmmaker_id", "n")
    )
    used = dict(
        Generation.objects.filter(round=rnd, owner_id__in=ids)
        .exclude(FREE)
        .values("owner_id")
        .annotate(n=Count("id"))
        .values_list("owner_id", "n")
    )
    return {i: Quota(total=rnd.quota + (extra.get(i) or 0), used=used.get(i, 0)) for i in ids}
