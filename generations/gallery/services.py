"""The filmmaker's writes on their takes: circle (under the round's limit) and note. Each tells
the gallery pages itself once it commits."""

from __future__ import annotations

from django.db import transaction

from generations.live import groups
from generations.models import Round, Take
from generations.queue.access import counting_takes

NOTE_MAX = Take._meta.get_field("note").max_length or 500


class CircleRefused(Exception):
    """Over the round's circle limit; the message names the limit."""


class NoteRefused(Exception):
    pass


def take_circle(*, take: Take, circled: bool) -> bool:
    """Circle or uncircle one of a filmmaker's takes; True if it changed.

    Circling holds a lock on the round's row while it counts, so two tabs (or a double click)
    circling different takes at once cannot both take the last place under the limit."""
    if not circled:
        n = Take.objects.filter(pk=take.pk, circled=True).update(circled=False)
        take.circled = False
        if n == 1:
            _changed(take)
        return n == 1
    with transaction.atomic():
        rnd = Round.objects.select_for_update(no_key=True).get(pk=take.generation.round_id)
        others = (
            counting_takes()
            .filter(generation__owner_id=take.generation.owner_id, generation__round=rnd, circled=True)
            .exclude(pk=take.pk)
            .count()
        )
        if others >= rnd.circle_limit:
            raise CircleRefused(
                f"You can circle at most {rnd.circle_limit} take{'s' if rnd.circle_limit != 1 else ''} "
                f"in “{rnd.title}”, and you have circled {others}: uncircle one first."
            )
        n = Take.objects.filter(pk=take.pk, circled=False).update(circled=True)
        if n == 1:
            _changed(take)
    take.circled = True
    return n == 1


def take_note_set(*, take: Take, note: str) -> None:
    note = note.strip()
    if "\x00" in note:  # PostgreSQL stores no NUL in text
        raise NoteRefused("A note cannot hold a NUL character.")
    if len(note) > NOTE_MAX:
        raise NoteRefused(f"A note is at most {NOTE_MAX} characters; this one has {len(note)}.")
    Take.objects.filter(pk=take.pk).update(note=note)
    take.note = note
    _changed(take)


def _changed(take: Take) -> None:
    g = take.generation
    groups.take_changed(take_id=take.pk, owner_id=g.owner_id, round_id=g.round_id)
