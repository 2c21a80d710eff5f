"""Preview frames from a backend, made small and rare enough for the events stream.

ComfyUI sends a full-size PNG per sampler step (666 KB for a noisy 512x512 frame); the job
card needs a thumbnail a couple of times a second. PyAV decodes the frame and encodes a small
JPEG; a frame that cannot be made small enough is skipped, never sent whole.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from gpu_worker import protocol

log = logging.getLogger(__name__)

# (largest side as a share of PREVIEW_MAX_SIDE, mjpeg qscale: 2 best .. 31 worst), tried in order.
ATTEMPTS = ((1.0, 6), (1.0, 14), (0.5, 14), (0.5, 28))
PIPE_FORMATS = {"image/png": "png_pipe", "image/jpeg": "jpeg_pipe"}


@dataclass(frozen=True)
class Shrunk:
    data: bytes
    content_type: str
    width: int
    height: int


def _sniff(image: bytes, content_type: str) -> str:
    if image.startswith(b"\x89PNG"):
        return "image/png"
    if image.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return content_type


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    # yuvj420p halves chroma: keep both sides even.
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def shrink(
    image: bytes,
    content_type: str = "image/png",
    *,
    max_side: int = protocol.PREVIEW_MAX_SIDE,
    max_bytes: int = protocol.PREVIEW_MAX_BYTES,
) -> Shrunk | None:
    """A JPEG of at most ``max_side`` pixels a side and ``max_bytes`` bytes, or None."""
    import av

    content_type = _sniff(image, content_type)
    pipe = PIPE_FORMATS.get(content_type)
    if pipe is None:
        return None
    with av.open(io.BytesIO(image), format=pipe) as container:
        frame = next(container.decode(video=0))
    for share, quality in ATTEMPTS:
        width, height = _fit(frame.width, frame.height, int(max_side * share))
        small = frame.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA")
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
        codec.time_base = Fraction(1, 1)
        codec.qmin = codec.qmax = quality
        data = b"".join(bytes(packet) for packet in [*codec.encode(small), *codec.encode(None)])
        if len(data) <= max_bytes:
            return Shrunk(data, "image/jpeg", width, height)
    return None


class PreviewForwarder:
    """The ``JobContext.on_preview`` of one job: at most one preview per ``min_interval``.

    Frames arriving faster are dropped before any decoding, so a flood of previews costs
    nothing but the bytes already received."""

    def __init__(
        self,
        send: Callable[[bytes, str, int, int], object],
        *,
        min_interval: float = protocol.PREVIEW_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send, self.min_interval, self.clock = send, min_interval, clock
        self._last = float("-inf")
        self.sent = 0

    def __call__(self, image: bytes, content_type: str) -> bool:
        now = self.clock()
        if now - self._last < self.min_interval:
            return False
        self._last = now
        try:
            shrunk = shrink(image, content_type)
        except Exception:
            log.debug("could not shrink a preview", exc_info=True)
            return False
        if shrunk is None:
            return False
        self.send(shrunk.data, shrunk.content_type, shrunk.width, shrunk.height)
        self.sent += 1
        return True
