"""workshop.rows.model_rows gives what Model.objects.raw() gives for the same query: every field
converted as the ORM converts it, unselected fields deferred, other columns as attributes."""

from __future__ import annotations

import pytest

from generations.models import Generation
from workshop.rows import model_rows

TABLE = Generation._meta.db_table


def test_it_reads_rows_as_raw_does(generation) -> None:
    sql = f'SELECT * FROM "{TABLE}" WHERE id = %s'
    (mine,) = model_rows(Generation, sql, [generation.pk])
    (theirs,) = Generation.objects.raw(sql, [generation.pk])
    for field in Generation._meta.concrete_fields:
        assert getattr(mine, field.attname) == getattr(theirs, field.attname), field.name
    assert isinstance(mine.params, dict) and mine.params["prompt"] == "a lighthouse"  # JSON, decoded
    assert mine.created_at.tzinfo is not None and not mine._state.adding


def test_it_defers_what_it_did_not_select_and_keeps_other_columns(generation) -> None:
    sql = f'SELECT id, status, 41 + 1 AS answer FROM "{TABLE}" WHERE id = %s'
    (mine,) = model_rows(Generation, sql, [generation.pk])
    assert mine.status == generation.status and mine.answer == 42
    assert "workflow" in mine.get_deferred_fields()
    assert mine.workflow == generation.workflow  # read when asked, as a deferred field is


def test_it_finds_nothing_without_a_row_and_refuses_a_query_without_the_key(generation) -> None:
    assert model_rows(Generation, f'SELECT * FROM "{TABLE}" WHERE id = %s', [-1]) == []
    with pytest.raises(ValueError, match="primary key"):
        model_rows(Generation, f'SELECT status FROM "{TABLE}"', [])
