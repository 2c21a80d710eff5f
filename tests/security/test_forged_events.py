"""Attack 4: an event appended to the shared stream put an attacker's message ("log in again at
http://evil.example") on another filmmaker's job card. Now a host appends only to its own stream,
an attempt is bound to the host whose worker took it and started it, and events for an attempt a
host does not hold are refused, counted and logged."""

from __future__ import annotations

import json

import pytest
import redis

from generations.models import SecurityEvent
from gpu_worker import protocol
from tests.live import wait_for
from tests.security.conftest import browser, status_of, submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
PHISH = "Your session expired: log in again at http://evil.example"


def test_a_host_cannot_report_on_an_attempt_it_does_not_hold(
    stack, mallory, filmmaker, video_round, bait_template
) -> None:
    legit = submit(filmmaker, video_round, frames=25)
    waiting = submit(filmmaker, video_round, bait_template)  # its job waits in RQ: nobody took it
    wait_for(lambda: status_of(legit) == "running", timeout=30, what="the honest worker to start")
    forged = {
        "type": "failed",
        "message": PHISH,
        "detail": "",
        "retriable": False,
        "worker": mallory.username,
    }
    # Not on the shared stream, nor on another host's.
    for stream in (protocol.EVENTS_STREAM, protocol.host_events_stream("gpu-honest")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            mallory.redis.xadd(
                stream, {"data": json.dumps({**forged, "generation_id": legit.pk, "attempt": 1})}
            )
    # On its own stream: for the honest worker's attempt, and for a job it never took.
    mallory.event(**forged, generation_id=legit.pk, attempt=1)
    mallory.event(type="started", generation_id=waiting.pk, attempt=1)
    mallory.event(**forged, generation_id=waiting.pk, attempt=1)
    refused = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.FOREIGN_EVENT, host__name="mallory")
    wait_for(lambda: sum(refused.values_list("count", flat=True)) == 3, timeout=15, what="three refusals")
    legit = succeeds(stack, legit)
    waiting.refresh_from_db()
    assert waiting.status == "dispatched" and waiting.host is None and not waiting.error_message
    with browser(stack, filmmaker) as client:
        page = client.get(f"/rounds/{video_round.pk}/").text
    assert "evil.example" not in page


def test_a_holders_failure_message_carries_no_link(
    stack, mallory, filmmaker, video_round, bait_template
) -> None:
    g = submit(filmmaker, video_round, bait_template)
    held = mallory.take("image")
    mallory.event(type="failed", generation_id=g.pk, attempt=held["attempt"], message=PHISH, retriable=False)
    wait_for(lambda: status_of(g) == "failed", timeout=15, what="the failure to apply")
    g.refresh_from_db()
    assert "evil.example" not in g.error_message and "[link removed]" in g.error_message
