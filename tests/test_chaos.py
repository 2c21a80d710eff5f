"""A short run of bench/chaos.py: workers killed, the conductor killed, Redis flushed."""

from __future__ import annotations

import pytest

from bench.chaos import Plan, run_chaos
from generations.models import Round

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_it_loses_nothing_through_chaos(live_stack, redis_conn, instructor, open_round, template) -> None:
    Round.objects.filter(pk=open_round.pk).update(quota=100)
    plan = Plan(
        generations=16, workers=2, kill_every=4.0, conductor_kill_at=2.0, redis_flush_at=5.0, timeout=90
    )
    figures = run_chaos(live_stack, redis_conn, instructor, open_round, template, plan)
    assert figures["worker_kills"] >= 1, plan.log
    assert (figures["succeeded"], figures["lost"], figures["stuck"]) == (16, 0, 0), (figures, plan.log)
    assert figures["duplicated_takes"] == 0 and figures["succeeded_without_take"] == 0
