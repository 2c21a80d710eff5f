"""How many generations a filmmaker may still submit in a round."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, Sum

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
