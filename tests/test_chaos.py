"""A short run of bench/chaos.py at the production settings: the leader conductor killed with a
standby running, the web server and Redis restarted, Redis flushed, all while renders are in flight."""

from __future__ import annotations

import pytest

from bench.chaos import Plan, run_chaos
from tests.conftest import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


# At the production settings the faults and the drain take about three minutes.
@pytest.mark.timeout(480)
def test_it_throws_no_finished_render_away_through_chaos(live_stack, open_round, template) -> None:
    open_round.quota = 1000
    open_round.save()
    owners = [make_user("filmmaker-a"), make_user("filmmaker-b")]
    # Renders of about 12 s: longer than LOST_GRACE_SECONDS, so a fault that loses one shows.
    plan = Plan(
        faults=("leader", "web", "redis", "flush"), workers=2, waiting_each=1, frames=30, warmup=6, spacing=18
    )
    # The stack's own redis-server (ACLs on): flushing and restarting it is the operators' to do.
    server = live_stack.redis_server
    figures = run_chaos(live_stack, server, server.admin(), owners, open_round, template, plan)
    assert figures["generations"] >= 8, plan.log
    assert (figures["lost"], figures["stuck"], figures["duplicated_takes"]) == (0, 0, 0), (figures, plan.log)
    assert figures["succeeded_without_take"] == 0
    assert figures["renders_redone"] == 0, (figures, plan.log)
    assert figures["leader_gap_s"] is not None and figures["leader_gap_s"] <= 3.0, plan.log
