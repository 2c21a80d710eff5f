"""Burst-aware reservation on the Django side: which rounds have an open burst window, whom they
expect, and the per-filmmaker cap the dispatch policy applies (see policy.BurstWindow)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from accounts.models import User

from .models import Round
from .policy import BurstWindow, Caps, Finished, InFlight

log = logging.getLogger(__name__)


def expected_filmmakers(rnd: Round) -> frozenset[int]:
    """The round's enrolled filmmakers, or else every active filmmaker account."""
    enrolled = frozenset(rnd.filmmakers.filter(is_active=True).values_list("pk", flat=True))
    if enrolled:
        return enrolled
    return frozenset(
        User.objects.filter(role=User.Role.FILMMAKER, is_active=True).values_list("pk", flat=True)
    )


def window_of(rnd: Round) -> BurstWindow | None:
    if rnd.status != Round.Status.OPEN or rnd.burst_opened_at is None or rnd.burst_closed_at is not None:
        return None
    return BurstWindow(
        round_id=rnd.pk,
        opened_at=rnd.burst_opened_at.timestamp(),
        length=float(settings.BURST_WINDOW_SECONDS),
        expected=expected_filmmakers(rnd),
    )


def seconds_left(rnd: Round) -> float:
    """For the live room's countdown: 0 when no window is open."""
    window = window_of(rnd)
    if window is None:
        return 0.0
    return max(window.opened_at + window.length - timezone.now().timestamp(), 0.0)


def caps_now(
    in_flight: InFlight, finished: Finished, workers: int, *, close: bool = True
) -> tuple[Caps, list[int]]:
    """(round -> cap for every open window, rounds whose window closed now). A window closes at the
    end of its length, or early once every expected filmmaker has started; `close=False` only reads."""
    caps: dict[int, int] = {}
    closed: list[int] = []
    now = timezone.now()
    rounds = Round.objects.filter(
        status=Round.Status.OPEN, burst_opened_at__isnull=False, burst_closed_at__isnull=True
    )
    for rnd in rounds:
        window = window_of(rnd)
        cap = window.cap(now.timestamp(), in_flight, finished, workers) if window else None
        if cap is not None:
            caps[rnd.pk] = cap
        elif close and Round.objects.filter(pk=rnd.pk, burst_closed_at__isnull=True).update(
            burst_closed_at=now
        ):
            log.info("burst window of round %s closed", rnd.pk)
            closed.append(rnd.pk)
    return caps, closed


def burst_go(*, round: Round) -> None:
    """Open (or reopen) the round's burst window: on opening the round, and on "Go" after a demo."""
    Round.objects.filter(pk=round.pk).update(burst_opened_at=timezone.now(), burst_closed_at=None)
    round.refresh_from_db()


def burst_close(*, round: Round) -> bool:
    """Close the window now: held GPUs are used at the conductor's next pass."""
    n = Round.objects.filter(pk=round.pk, burst_closed_at__isnull=True).update(burst_closed_at=timezone.now())
    round.refresh_from_db()
    return n == 1
