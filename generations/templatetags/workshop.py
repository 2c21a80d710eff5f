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
