"""The day itself: the workshop record the panel runs (name, date, GPU budget)."""

from __future__ import annotations

import datetime
from decimal import Decimal

from generations.live import groups
from generations.models import Workshop


class PanelRefused(Exception):
    """An action that must change nothing; the message is for the instructor."""


def workshop_current() -> Workshop | None:
    """The workshop the panel runs: the latest one created."""
    return Workshop.objects.select_related("spotlight").first()


def workshop_get() -> Workshop:
    """The current workshop, created on first need (announcements and the spotlight hang on it)."""
    return workshop_current() or Workshop.objects.create(name="Workshop")


def workshop_save(*, name: str, date: datetime.date | None, gpu_budget: Decimal) -> Workshop:
    """Create or update the current workshop; the live room shows its budget."""
    workshop = workshop_current() or Workshop()
    workshop.name, workshop.date, workshop.gpu_budget = name, date, gpu_budget
    workshop.save()
    groups.room_changed()
    return workshop
