"""The burst window on the Django side: which rounds have one open, whom it expects, and the
per-filmmaker cap the dispatch policy applies (see domain.policy.BurstWindow). After a round opens
or the instructor's "Go", GPUs wait briefly for filmmakers who have not pressed "generate" yet."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from accounts.models import User
from generations.broker.messages import wake
from generations.domain.policy import BurstWindow, Caps, Finished, InFlight
from generations.live import groups
from generations.models import Round

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


def _open_windows() -> list[BurstWindow]:
    rounds = Round.objects.filter(
        status=Round.Status.OPEN, burst_opened_at__isnull=False, burst_closed_at__isnull=True
    )
    return [w for w in map(window_of, rounds) if w is not None]


def window_caps(in_flight: InFlight, finished: Finished, workers: int) -> Caps:
    """round -> the cap of every window still open now (a read: it closes nothing)."""
    now = timezone.now().timestamp()
    caps = {}
    for window in _open_windows():
        cap = window.cap(now, in_flight, finished, workers)
        if cap is not None:
            caps[window.round_id] = cap
    return caps


def windows_update(in_flight: InFlight, finished: Finished, workers: int) -> tuple[Caps, list[int]]:
    """Close the windows that ended (by time, or once every expected filmmaker has started) and give
    the caps of those still open: (round -> cap, rounds closed now). The conductor's pass calls it."""
    now = timezone.now()
    caps, closed = {}, []
    for window in _open_windows():
        cap = window.cap(now.timestamp(), in_flight, finished, workers)
        if cap is not None:
            caps[window.round_id] = cap
        elif Round.objects.filter(pk=window.round_id, burst_closed_at__isnull=True).update(
            burst_closed_at=now
        ):
            log.info("burst window of round %s closed", window.round_id)
            closed.append(window.round_id)
    if closed:
        groups.room_changed()
    return caps, closed


def window_go(*, round: Round) -> None:
    """Open (or reopen) the round's burst window: on opening the round, and on "Go" after a demo."""
    Round.objects.filter(pk=round.pk).update(burst_opened_at=timezone.now(), burst_closed_at=None)
    round.refresh_from_db()
    groups.room_changed()


def window_close(*, round: Round) -> bool:
    """Close the window now: held GPUs go to the waiting jobs at the conductor's next pass (now)."""
    n = Round.objects.filter(pk=round.pk, burst_closed_at__isnull=True).update(burst_closed_at=timezone.now())
    round.refresh_from_db()
    if n == 1:
        wake()
    groups.room_changed()
    return n == 1
