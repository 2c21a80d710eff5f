"""The local provider follows a burst from 0 workers up and back to 0 (a short bench/autoscale.py)."""

from __future__ import annotations

import pytest

from bench.autoscale import run_burst

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_it_scales_up_for_a_burst_and_back_to_zero(live_stack, redis_conn, instructor, open_round, template):
    figures = run_burst(live_stack, redis_conn, instructor, open_round, template, jobs=6, max_workers=2)
    assert figures["succeeded"] == 6, figures["timeline"][-3:]
    assert figures["max_workers_seen"] == 2 and figures["final_workers"] == 0
    assert figures["timeline"][0]["workers"] == 0
