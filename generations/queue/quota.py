"""How many generations a filmmaker may still submit in a round."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
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


def quota_for(user: User, rnd: Round, *, lock: bool = False) -> Quota:
    """One query (every submit asks, twice, and a burst is twenty at once: the ORM's two queries
    cost 2.6 ms here, this one 0.4). With `lock`, the filmmaker's row is locked FOR UPDATE until
    the transaction ends: a second submission of theirs waits to count this one."""
    extra_sql, used_sql, free_params = _quota_sql()
    users = connection.ops.quote_name(User._meta.db_table)
    sql = f"SELECT ({extra_sql}), ({used_sql}) FROM {users} WHERE id = %s"
    if lock and connection.features.has_select_for_update:  # SQLite (the demo) locks the whole file
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [rnd.pk, user.pk, rnd.pk, user.pk, *free_params, user.pk])
        row = cursor.fetchone()
    extra, used = row if row else (0, 0)
    return Quota(total=rnd.quota + (extra or 0), used=used or 0)


@functools.cache
def _quota_sql() -> tuple[str, str, tuple[Any, ...]]:
    """The two subqueries of quota_for, FREE compiled by the ORM once (so the rule has one home)."""
    quote = connection.ops.quote_name
    topups, generations = quote(QuotaTopUp._meta.db_table), quote(Generation._meta.db_table)
    query = Generation.objects.filter(FREE).query
    free, params = query.get_compiler(connection=connection).compile(query.where)
    extra = f"SELECT COALESCE(SUM(amount), 0) FROM {topups} WHERE round_id = %s AND filmmaker_id = %s"
    # IS NOT TRUE, as the ORM's exclude(): a NULL (a failure not yet classified) is not free.
    used = f"SELECT COUNT(*) FROM {generations} WHERE round_id = %s AND owner_id = %s"
    used += f" AND ({free}) IS NOT TRUE"
    return extra, used, tuple(params)


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
