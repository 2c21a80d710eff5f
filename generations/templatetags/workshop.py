from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def about(seconds: float | None) -> str:
    """A wait for people: "under a minute", "about 4 min", "about 1 h 10 min"."""
    if seconds is None:
        return "unknown"
    if seconds < 45:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


@register.filter
def ordinal_place(n: int) -> str:
    if n == 1:
        return "next"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} in line"


def _minutes(seconds: float) -> str:
    minutes = max(round(seconds / 60), 1)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@register.simple_tag
def span(low: float, high: float) -> str:
    """When, as a range people read: "in under a minute", "within 2 min", "in 3–5 min"."""
    if high < 45:
        return "in under a minute"
    if low < 45:
        return f"within {_minutes(high)}"
    lo, hi = round(low / 60), round(high / 60)
    if lo == hi:
        return f"in about {_minutes(high)}"
    if hi < 60:
        return f"in {lo}–{hi} min"
    return f"in {_minutes(low)} – {_minutes(high)}"


@register.filter
def pixels(params: dict) -> str:
    """ "352×192" from a generation's parameters, or "" without a size."""
    w, h = params.get("width"), params.get("height")
    return f"{w}×{h}" if w and h else ""
