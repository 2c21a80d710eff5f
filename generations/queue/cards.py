"""What a job card shows beyond its row: its place in line and ETA while queued, the latest preview
frame while running; and the whole "my queue" fragment."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from accounts.models import User
from generations.broker.connection import connection
from generations.broker.previews import previews
from generations.models import Generation, Round
from generations.queue.quota import quota_of
from generations.queue.selectors import generations_of
from generations.queue.snapshot import line_estimates


def with_estimates(generations: Iterable[Generation]) -> list[Generation]:
    """Attach `estimate` (position and ETA, or None) to each generation for its job card, and
    `preview_ts` to running ones that have a preview frame."""
    items = list(generations)
    queued = [g.pk for g in items if g.status == Generation.Status.QUEUED]
    # The line as last published for the whole queue: no per-card (or per-socket) recomputation.
    try:
        found = line_estimates(connection(), queued) if queued else {}
    except redis.RedisError:
        found = {}  # the cards say "waiting for a GPU" until Redis answers again
    for g in items:
        g.estimate = found.get(g.pk)  # type: ignore[attr-defined]
    return with_previews(items)


def with_previews(generations: list[Generation]) -> list[Generation]:
    running = [g for g in generations if g.status == Generation.Status.RUNNING]
    found = previews([(g.pk, g.attempt) for g in running])
    for g in running:
        g.preview_ts = found[g.pk]["ts"] if g.pk in found else None  # type: ignore[attr-defined]
    return generations


def queue_context(user: User, rnd: Round) -> dict[str, object]:
    """What the "my queue" partial needs: the cards (with positions and ETAs) and the quota. Every
    socket renders it on each push: three queries (two while nothing has succeeded) and two Redis reads."""
    generations = generations_of(user, rnd)
    return {
        "generations": with_estimates(generations),
        "quota": None if user.is_instructor else quota_of(user, rnd, generations),
        "round": rnd,
    }
