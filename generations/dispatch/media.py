"""What the web app learns from a take when it arrives (its type, size, length, a poster and a
thumbnail), found by the probe (``probe``) in a child process so that a hostile file costs at most
MEDIA_PROBE_CPU_SECONDS of CPU, MEDIA_PROBE_MEMORY_MB of memory and MEDIA_PROBE_TIMEOUT of waiting,
and never the web process itself.

Children are forked from a multiprocessing fork server that preloaded PyAV (0.7 s to import here),
so a probe costs a fork, not an interpreter. Answers come back as JSON, never pickle: the child
has read untrusted bytes.
"""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

ANSWER_MAX_BYTES = 16 * 1024 * 1024
_context: Any = None
_lock = threading.Lock()


class MediaRefused(Exception):
    """Not a video or image this workshop accepts (HTTP 415)."""


@dataclass(frozen=True)
class MediaInfo:
    content_type: str
    extension: str
    kind: str
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    frame_count: int | None = None
    poster_png: bytes | None = None
    thumbnail_jpeg: bytes | None = None


def _forkserver() -> Any:
    global _context
    with _lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["av", "generations.dispatch.probe"])
            _context = context
    return _context


def probe_file(path: Path) -> MediaInfo:
    """Probe ``path`` in a limited child process; ``MediaRefused`` for anything not allowed."""
    from generations.dispatch import probe  # the child's module (no Django)

    context = _forkserver()
    limits = {
        "memory_mb": settings.MEDIA_PROBE_MEMORY_MB,
        "cpu_seconds": settings.MEDIA_PROBE_CPU_SECONDS,
        "max_side": settings.MEDIA_MAX_SIDE,
        "max_pixels": settings.MEDIA_MAX_PIXELS,
    }
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=probe.child, args=(send, str(path), limits), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(settings.MEDIA_PROBE_TIMEOUT):
            raise MediaRefused("The file took too long to read.")
        answer = json.loads(receive.recv_bytes(ANSWER_MAX_BYTES))
    except (EOFError, OSError, ValueError):
        # The child died: out of memory, out of CPU time, or worse.
        raise MediaRefused("The file could not be read.") from None
    finally:
        receive.close()
        child.join(1)
        if child.is_alive():
            child.kill()
            child.join()
    if "refused" in answer:
        raise MediaRefused(f"Refused: {answer['refused']}.")
    found = answer["ok"]
    return MediaInfo(
        content_type=str(found["content_type"]),
        extension=str(found["extension"]),
        kind=str(found["kind"]),
        width=found["width"],
        height=found["height"],
        duration=found["duration"],
        frame_count=found["frame_count"],
        poster_png=base64.b64decode(found["poster"]) or None,
        thumbnail_jpeg=base64.b64decode(found["thumbnail"]) or None,
    )
