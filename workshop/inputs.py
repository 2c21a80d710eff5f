"""Reading numbers out of query strings and forms without a 500 on what a person (or a fuzzer)
can type: "²" passes str.isdigit() but not int(); 5,000 digits pass both checks' spirit but not
int() (Python's digit limit) nor a database column."""

from __future__ import annotations

# A PostgreSQL bigint holds 18 digits safely.
MAX_DIGITS = 18


def int_or_none(raw: object) -> int | None:
    """A non-negative integer written in ASCII digits (at most 18), else None."""
    text = str(raw)
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS):
        return None
    return int(text)
