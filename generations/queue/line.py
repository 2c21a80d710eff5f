"""The policy's view of the room, read from the database: who waits, who has what in flight, who
has finished how much. The conductor dispatches by it; the job cards and the ETA read it too."""

from __future__ import annotations

from django.db.models import Count

from generations.domain.policy import Finished, InFlight, Pending
from generations.models import Generation


def pending_of(generations: list[Generation]) -> list[Pending]:
    return [
        Pending(
            id=g.pk,
            owner_id=g.owner_id,
            round_id=g.round_id,
            queue=g.template.queue,
            priority=g.priority,
            submitted_at=g.created_at.timestamp(),
            requeued=g.requeued,
        )
        for g in generations
    ]


def load() -> tuple[InFlight, Finished]:
    """(in flight per owner, succeeded per (round, owner))."""
    in_flight = dict(
        Generation.objects.filter(status__in=Generation.IN_FLIGHT)
        .values("owner_id")
        .annotate(n=Count("id"))
        .values_list("owner_id", "n")
    )
    finished = {
        (r, o): n
        for r, o, n in Generation.objects.filter(status=Generation.Status.SUCCEEDED)
        .values("round_id", "owner_id")
        .annotate(n=Count("id"))
        .values_list("round_id", "owner_id", "n")
    }
    return in_flight, finished
