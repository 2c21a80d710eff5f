"""Model instances from a hand-written query, as ``Model.objects.raw()`` gives them, for the queries
every submission runs (the round locked, the template offered, the filmmaker's queue).

raw() matches the cursor's columns to the model's fields and looks up each field's converters on
every query: about 300 Python calls for the queue's 30 columns, three times what running the query
costs. Here that match is made once per model and set of columns. Columns that are not the model's
become attributes, unconverted, as raw() makes them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connections, router
from django.db.models import Model

M = TypeVar("M", bound=Model)


def model_rows(model: type[M], sql: str, params: Sequence[Any]) -> list[M]:
    """The rows of `sql` as `model` instances (the primary key must be among the columns; fields
    not selected are deferred)."""
    alias = router.db_for_read(model)
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = tuple(column[0] for column in cursor.description)
        rows = cursor.fetchall()
    attnames, positions, converters, extras = _plan(model, columns, alias)
    found = []
    for row in rows:
        values = [row[i] for i in positions]
        for i, expression, convert in converters:
            values[i] = convert(values[i], expression, connection)
        instance = model.from_db(alias, attnames, values)
        for name, i in extras:
            setattr(instance, name, row[i])
        found.append(instance)
    return found


Converter = tuple[int, Any, Callable[..., Any]]


@functools.cache
def _plan(
    model: type[Model], columns: tuple[str, ...], alias: str
) -> tuple[list[str], list[int], list[Converter], list[tuple[str, int]]]:
    """Which column fills which field (in the model's field order, as from_db wants them), each
    field's converters (the backend's, then the field's: as the ORM applies them), and the rest.
    The converters are taken from the first connection asked (each thread has its own): they read
    only settings every connection to the database shares (SQLite's time zone, say), and each is
    called with the connection of the query at hand."""
    connection = connections[alias]
    name = connection.introspection.identifier_converter
    at = {name(column): i for i, column in enumerate(columns)}
    fields = [f for f in model._meta.concrete_fields if name(f.column) in at]
    if model._meta.pk not in fields:
        raise ValueError(f"the query must select {model.__name__}'s primary key")
    converters = []
    for i, field in enumerate(fields):
        expression = field.get_col(model._meta.db_table)
        for convert in connection.ops.get_db_converters(expression) + expression.get_db_converters(
            connection
        ):
            converters.append((i, expression, convert))
    mine = {name(f.column) for f in fields}
    extras = [(column, i) for column, i in at.items() if column not in mine]
    return [f.attname for f in fields], [at[name(f.column)] for f in fields], converters, extras
