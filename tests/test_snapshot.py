"""The line (positions and ETAs) is computed once for the whole queue, read by every card and push,
and pushed only to the owners whose cards read differently."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations.dispatch import attempts
from generations.live import groups
from generations.queue import snapshot
from generations.queue.cards import with_estimates
from tests.test_eta import submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def told(monkeypatch) -> list[set[int]]:
    calls: list[set[int]] = []
    monkeypatch.setattr(groups, "queue_moved", lambda *, owner_ids: calls.append(set(owner_ids)))
    return calls


def test_it_reads_published_estimates_without_recomputing(redis_conn, owner, open_round, template) -> None:
    g = submit(owner, open_round, template)
    published = snapshot.line_publish(redis_conn)
    with CaptureQueriesContext(connection) as queries:
        [card] = with_estimates([g])
    assert len(queries) == 0 and card.estimate.position == published[g.pk].position == 1


def test_it_computes_the_line_when_none_was_published(redis_conn, owner, open_round, template) -> None:
    g = submit(owner, open_round, template)
    assert snapshot.line_estimates(redis_conn, [g.pk])[g.pk].position == 1
    assert redis_conn.exists(snapshot.KEY)


def test_it_counts_down_from_when_the_line_was_computed(redis_conn, owner, open_round, template) -> None:
    g = submit(owner, open_round, template)
    done = snapshot.line_publish(redis_conn)[g.pk].done_in
    assert 0 < snapshot.line_estimates(redis_conn, [g.pk])[g.pk].done_in <= done


def test_it_tells_only_the_owners_whose_cards_moved(
    redis_conn, told, owner, other, open_round, template
) -> None:
    first, second = submit(owner, open_round, template), submit(other, open_round, template)
    keeper = snapshot.LineKeeper()
    assert keeper.refresh(redis_conn) == {owner.pk, other.pk}  # both cards got their place
    attempts.generation_dispatch(generation=first)  # owner's card leaves the line (its own push)
    assert keeper.refresh(redis_conn) == {other.pk}  # second moves up from 2nd to next
    assert snapshot.line_estimates(redis_conn, [second.pk])[second.pk].position == 1
    assert told == [{owner.pk, other.pk}, {other.pk}]


def test_it_publishes_nothing_when_nothing_moved(redis_conn, told, owner, open_round, template) -> None:
    submit(owner, open_round, template)
    keeper = snapshot.LineKeeper()
    keeper.refresh(redis_conn)
    with CaptureQueriesContext(connection) as queries:
        assert keeper.refresh(redis_conn) == set()
    assert len(queries) == 1 and len(told) == 1  # one look at the queue; no ETA computed, nobody told
