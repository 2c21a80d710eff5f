"""CSV for spreadsheets: one line at a time, and never a cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

# Spreadsheets read a file that starts with it as UTF-8 (prompts are not ASCII).
BOM = "\ufeff"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    def write(self, value: str) -> str:
        return value


_writer = csv.writer(_Line())


def safe_cell(value: object) -> object:
    """A prompt that starts with = + - @ would run as a formula: prefix it with a quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def csv_line(row: Iterable[object]) -> str:
    return str(_writer.writerow([safe_cell(v) for v in row]))


def csv_lines(header: list[str], rows: Iterable[Iterable[object]], *, bom: bool = False) -> Iterator[str]:
    """The header and each row as CSV lines, produced one at a time."""
    if bom:
        yield BOM
    yield csv_line(header)
    for row in rows:
        yield csv_line(row)
