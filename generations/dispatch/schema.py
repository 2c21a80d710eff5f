"""What a worker event may contain, checked before anything reads it: known types, integers and
finite numbers within bounds, strings of bounded length without control characters. An event that
fails is dropped with a log line; it never reaches the database or stops the conductor."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from generations.files.sniff import preview_image
from gpu_worker import protocol

DATA_MAX_BYTES = 128 * 1024
# The worker sends at most PREVIEW_MAX_SIDE a side; a little slack, never a large decode.
PREVIEW_SIDE_LIMIT = 1024
ID_MAX = 2**53
ATTEMPT_MAX = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A failure message is shown to the filmmaker: a host must not be able to put a link on a card.
_LINK = re.compile(r"(?i)\b(?:https?://|www\.)\S+")


class Invalid(Exception):
    pass


def _int(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{name} must be a whole number from {low} to {high}")
    return value


def _number(value: Any, low: float, high: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"{name} must be a finite number")
    if not low <= value <= high:
        raise Invalid(f"{name} must be from {low} to {high}")
    return float(value)


def _text(value: Any, limit: int, name: str, *, multiline: bool = False) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(f"{name} must be text of at most {limit} characters")
    if not multiline and ("\n" in value or "\r" in value):
        value = " ".join(value.splitlines())
    return _CONTROL.sub("", value)


def user_message(text: str) -> str:
    return _LINK.sub("[link removed]", text).strip()


def event_parse(data: bytes | None, *, host_username: str | None) -> dict[str, Any]:
    """The checked event in an entry's ``data`` field (``Invalid`` otherwise). From an enrolled host
    (``host_username``) only worker events are accepted, and its worker names lie in its namespace."""
    if data is None or len(data) > DATA_MAX_BYTES:
        raise Invalid("missing or oversized data")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("not JSON") from None
    if not isinstance(raw, dict):
        raise Invalid("not an object")
    kind = raw.get("type")
    if kind == "wake" and host_username is None:
        return {"type": "wake"}
    if kind not in (*protocol.EVENT_TYPES, protocol.PREVIEW, protocol.REFUSED):
        raise Invalid(f"unknown type {str(kind)[:40]!r}")
    event: dict[str, Any] = {
        "type": kind,
        "generation_id": _int(
            raw.get("generation_id"), 0 if kind == protocol.REFUSED else 1, ID_MAX, "generation_id"
        ),
        "attempt": _int(raw.get("attempt"), 0, ATTEMPT_MAX, "attempt"),
        "worker": _text(raw.get("worker"), 120, "worker"),
        "ts": _number(raw.get("ts", 0), 0, 1e11, "ts"),
    }
    if host_username is not None and not protocol.in_namespace(event["worker"], host_username):
        raise Invalid(f"worker {event['worker'][:60]!r} is not under {host_username}")
    if kind == protocol.PROGRESS:
        event["percent"] = _number(raw.get("percent", 0), 0, 100, "percent")
        for name in ("step", "steps"):
            value = raw.get(name)
            event[name] = None if value is None else _int(value, 0, 10**7, name)
        event["message"] = _text(raw.get("message"), 200, "message")
    elif kind == protocol.SUCCEEDED:
        outputs = raw.get("outputs", [])
        if not isinstance(outputs, list) or len(outputs) > 64:
            raise Invalid("outputs must be a list of at most 64 names")
        event["outputs"] = [_text(o, 255, "output") for o in outputs]
    elif kind == protocol.FAILED:
        event["message"] = user_message(_text(raw.get("message"), 2000, "message"))
        event["detail"] = _text(raw.get("detail"), 20000, "detail", multiline=True)
        retriable = raw.get("retriable", False)
        if not isinstance(retriable, bool):
            raise Invalid("retriable must be true or false")
        event["retriable"] = retriable
    elif kind == protocol.PREVIEW:
        image = raw.get("image")
        limit = (protocol.PREVIEW_MAX_BYTES * 4) // 3 + 4
        if not isinstance(image, str) or not 0 < len(image) <= limit:
            raise Invalid("image must be base64 of at most PREVIEW_MAX_BYTES")
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("image is not base64") from None
        # The type is what the bytes are (JPEG, PNG or WebP within the caps), never what was claimed.
        found = preview_image(data, max_bytes=protocol.PREVIEW_MAX_BYTES, max_side=PREVIEW_SIDE_LIMIT)
        if found is None:
            raise Invalid("image is not a JPEG, PNG or WebP within the preview caps")
        event["image"] = image
        event["content_type"], event["width"], event["height"] = found[0].content_type, found[1], found[2]
    elif kind == protocol.REFUSED:
        event["job_id"] = _text(raw.get("job_id"), 200, "job_id")
        event["reason"] = _text(raw.get("reason"), 300, "reason")
    return event
