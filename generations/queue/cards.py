"""What a job card shows beyond its row: its place in line and ETA while queued, the latest preview
frame while running; and the whole "my queue" fragment."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from accounts.models import User
from generations.broker.connection import connection
from generations.broker.previews import previews
from generations.models import Generation, Round
from generations.queue import eta
from generations.queue.quota import quota_for
from generations.queue.selectors import active_of
from generations.queue.snapshot import line_estimates


def with_estimates(generations: Iterable[Generation]) -> list[Generation]:
    """Attach `estimate` (position and ETA while queued, the worker it waits for once dispatched,
    when it is ready while running; or None) to each generation for its job card, and `preview_ts`
    to running ones that have a preview frame."""
    items = list(generations)
    # Running: from its own progress (cheap, and fresher than any line). Waiting or sent to a worker:
    # the line as last published for the whole queue, no per-card (or per-socket) recomputation.
    found = eta.running_estimates([g for g in items if g.status == Generation.Status.RUNNING])
    waiting = [g.pk for g in items if g.status in (Generation.Status.QUEUED, Generation.Status.DISPATCHED)]
    try:
        found.update(line_estimates(connection(), waiting) if waiting else {})
    except redis.RedisError:
        pass  # the cards say "waiting for a GPU" until Redis answers again
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
    """What the "my queue" partial needs: the cards of unfinished generations (running, sent to a
    worker, then waiting in their order in line, with positions and ETAs) and the quota."""
    cards = with_estimates(active_of(user, rnd))
    waiting = [g for g in cards if g.status == Generation.Status.QUEUED]
    waiting.sort(key=lambda g: (g.estimate.position if g.estimate else 10**9, g.created_at))  # type: ignore[attr-defined]
    return {
        "generations": [g for g in cards if g.status != Generation.Status.QUEUED] + waiting,
        "quota": None if user.is_instructor else quota_for(user, rnd),
        "round": rnd,
    }
