"""What the web app learns from a take when it arrives: size, length, a poster frame."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

log = logging.getLogger(__name__)

POSTER_MAX_WIDTH = 640
THUMBNAIL_MAX_WIDTH = 480


@dataclass(frozen=True)
class MediaInfo:
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    frame_count: int | None = None
    poster_png: bytes | None = None


def _png(frame: av.VideoFrame) -> bytes:
    width = min(frame.width, POSTER_MAX_WIDTH)
    height = max(2, round(frame.height * width / frame.width))
    rgb = frame.reformat(width=width, height=height, format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    codec.time_base = Fraction(1, 1)
    return b"".join(bytes(p) for p in [*codec.encode(rgb), *codec.encode(None)])


def probe(path: Path, content_type: str) -> MediaInfo:
    """Read dimensions, duration, frame count and a poster; unknown formats give an empty result."""
    if not content_type.startswith(("video/", "image/")):
        return MediaInfo()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return MediaInfo()
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            frames = stream.frames or None
            if frames is None and duration and stream.average_rate:
                frames = round(duration * float(stream.average_rate))
            is_video = content_type.startswith("video/")
            return MediaInfo(
                width=stream.codec_context.width or None,
                height=stream.codec_context.height or None,
                duration=duration if is_video else None,
                frame_count=frames if is_video else None,
                poster_png=_png(first) if (first is not None and is_video) else None,
            )
    except (av.FFmpegError, StopIteration, ValueError) as exc:
        log.warning("could not probe %s: %s", path.name, exc)
        return MediaInfo()


def _jpeg(frame: av.VideoFrame, max_width: int) -> bytes:
    width = min(frame.width, max_width)
    height = max(2, round(frame.height * width / frame.width))
    # 4:2:0 JPEG wants even dimensions.
    width, height = max(2, width - width % 2), height - height % 2
    yuv = frame.reformat(width=width, height=height, format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 1)
    return b"".join(bytes(p) for p in [*codec.encode(yuv), *codec.encode(None)])


def thumbnail(path: Path, content_type: str) -> bytes | None:
    """A small JPEG of the first frame, for the gallery's grid (videos and images alike);
    None for anything PyAV cannot decode."""
    if not content_type.startswith(("video/", "image/")):
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            first = next(container.decode(container.streams.video[0]), None)
            return _jpeg(first, THUMBNAIL_MAX_WIDTH) if first is not None else None
    except (av.FFmpegError, ValueError) as exc:
        log.warning("could not make a thumbnail of %s: %s", path.name, exc)
        return None
