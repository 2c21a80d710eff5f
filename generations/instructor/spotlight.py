"""The spotlight: the take the projector (/screen) shows, picked by the instructor."""

from __future__ import annotations

from generations.instructor.workshop import workshop_current, workshop_get
from generations.live import groups
from generations.models import Round, Take, Workshop
from generations.queue.selectors import round_circled_takes


def spotlight_current() -> Take | None:
    return spotlight_of(workshop_current())


def spotlight_of(workshop: Workshop | None) -> Take | None:
    """The take on the screen of `workshop` as read already (the live room reads it anyway)."""
    if workshop is None or workshop.spotlight_id is None:
        return None
    return (
        Take.objects.select_related("generation__owner", "generation__round")
        .filter(pk=workshop.spotlight_id)
        .first()
    )


def spotlight_set(*, take: Take | None) -> None:
    workshop = workshop_get()
    Workshop.objects.filter(pk=workshop.pk).update(spotlight=take)
    groups.spotlight_changed()


def spotlight_next(*, rnd: Round) -> Take | None:
    """Step to the round's next circled take (after the one on screen; the first when the screen
    shows none or another round's take). Two clicks at once step once."""
    takes = round_circled_takes(rnd)
    if not takes:
        return None
    workshop = workshop_get()
    current = workshop.spotlight_id
    ids = [t.pk for t in takes]
    chosen = takes[(ids.index(current) + 1) % len(takes)] if current in ids else takes[0]
    if Workshop.objects.filter(pk=workshop.pk, spotlight_id=current).update(spotlight=chosen):
        groups.spotlight_changed()
    return spotlight_current()
