"""Announcements: a banner on every filmmaker's page until the instructor withdraws it."""

from __future__ import annotations

from django.db.models import Q

from accounts.models import User
from generations.instructor.workshop import PanelRefused, workshop_current, workshop_get
from generations.live import groups
from generations.models import Announcement

MAX_LENGTH = 500


def announcements_active() -> list[Announcement]:
    """The banners on every filmmaker's page, newest first."""
    qs = Announcement.objects.filter(active=True)
    workshop = workshop_current()
    if workshop is not None:
        qs = qs.filter(Q(workshop=workshop) | Q(workshop__isnull=True))
    return list(qs.order_by("-created_at")[:5])


def announcement_create(*, text: str, by: User) -> Announcement:
    text = " ".join(text.split())
    if not text:
        raise PanelRefused("Type the announcement first.")
    if "\x00" in text:  # PostgreSQL stores no NUL in text
        raise PanelRefused("An announcement cannot hold a NUL character.")
    if len(text) > MAX_LENGTH:
        raise PanelRefused(f"An announcement holds at most {MAX_LENGTH} characters.")
    announcement = Announcement.objects.create(workshop=workshop_get(), text=text, created_by=by)
    groups.announcements_changed()
    return announcement


def announcement_withdraw(*, announcement: Announcement) -> bool:
    n = Announcement.objects.filter(pk=announcement.pk, active=True).update(active=False)
    if n == 1:
        groups.announcements_changed()
    return n == 1
