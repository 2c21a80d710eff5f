"""Feedback for the person who acted: a toast their page shows, outside every live fragment, so a
push that re-renders the fragment a moment later cannot wipe it out.

It travels as htmx's HX-Trigger response header (an event named "toast" that static/js/app.js
turns into a toast); a page without htmx simply ignores it."""

from __future__ import annotations

import json

from django.http import HttpResponse

KINDS = ("ok", "info", "error")


def toast(response: HttpResponse, text: str, *, kind: str = "ok") -> HttpResponse:
    """Add a toast to an HTMX response (merged with any HX-Trigger it already has)."""
    if kind not in KINDS:
        raise ValueError(f"unknown toast kind {kind!r}")
    raw = response.headers.get("HX-Trigger")
    events = json.loads(raw) if raw and raw.startswith("{") else ({raw: None} if raw else {})
    events["toast"] = {"text": text, "kind": kind}
    # ASCII only: HTTP header values are Latin-1; json.dumps escapes the rest.
    response["HX-Trigger"] = json.dumps(events)
    return response
