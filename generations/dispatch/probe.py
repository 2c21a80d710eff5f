"""The media probe itself, run in a child process (``media.probe_file``): what an uploaded file is,
its size, length and frame count, a poster and a thumbnail.

Nothing here trusts the file: its container is chosen from its first bytes (``files.sniff``) and
FFmpeg may use only that demuxer (never one that follows references, like a playlist); an image's
size is read from its header before anything decodes it, a video's from its stream parameters
before its first frame is decoded. The process runs under CPU and memory limits set first thing.
No Django here: the child is forked from a small server that preloaded only this and PyAV.
"""

from __future__ import annotations

import base64
import json
import resource
from fractions import Fraction
from typing import Any

import av

from generations.files import sniff

POSTER_MAX_WIDTH = 640
THUMBNAIL_MAX_WIDTH = 480


class Refused(Exception):
    pass


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _encode(frame: av.VideoFrame, codec_name: str, pix_fmt: str, max_width: int) -> bytes:
    width = min(frame.width, max_width)
    height = max(2, round(frame.height * width / frame.width))
    if pix_fmt == "yuvj420p":  # 4:2:0 wants even sides
        width, height = max(2, width - width % 2), max(2, height - height % 2)
    picture = frame.reformat(width=width, height=height, format=pix_fmt)
    codec = av.CodecContext.create(codec_name, "w")
    codec.width, codec.height, codec.pix_fmt = width, height, pix_fmt
    codec.time_base = Fraction(1, 1)
    return b"".join(bytes(p) for p in [*codec.encode(picture), *codec.encode(None)])


def probe(path: str, *, max_side: int, max_pixels: int) -> dict[str, Any]:
    """What the file is (raises ``Refused`` for anything but an allowed, sane video or image)."""
    with open(path, "rb") as f:
        head = f.read(sniff.HEAD_BYTES)
    kind = sniff.kind_of(head)
    if kind is None:
        raise Refused("not a video or image container this workshop accepts")

    def check(width: int | None, height: int | None) -> None:
        if not width or not height:
            raise Refused("its dimensions cannot be read")
        if width > max_side or height > max_side or width * height > max_pixels:
            raise Refused(f"{width}x{height} is larger than this workshop accepts")

    if kind.kind == "image":
        size = sniff.image_size(head, kind)
        check(*(size or (None, None)))
    options = {"probesize": "5000000", "analyzeduration": "5000000"}
    with av.open(path, format=kind.demuxer, options=options) as container:
        if not container.streams.video:
            raise Refused("it has no picture")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        check(width, height)
        first = next(container.decode(stream), None)
        if first is None:
            raise Refused("no frame could be decoded")
        duration = frames = None
        if kind.kind == "video":
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            frames = stream.frames or None
            if frames is None and duration and stream.average_rate:
                frames = round(duration * float(stream.average_rate))
        poster = _encode(first, "png", "rgb24", POSTER_MAX_WIDTH) if kind.kind == "video" else b""
        thumbnail = _encode(first, "mjpeg", "yuvj420p", THUMBNAIL_MAX_WIDTH)
    return {
        "content_type": kind.content_type,
        "extension": kind.extension,
        "kind": kind.kind,
        "width": width,
        "height": height,
        "duration": duration,
        "frame_count": frames,
        "poster": base64.b64encode(poster).decode("ascii"),
        "thumbnail": base64.b64encode(thumbnail).decode("ascii"),
    }


def child(conn: Any, path: str, limits: dict[str, int]) -> None:
    """The child's entry point: limits first, then the probe; one JSON answer on ``conn``."""
    _limit(limits["memory_mb"], limits["cpu_seconds"])
    try:
        answer = {"ok": probe(path, max_side=limits["max_side"], max_pixels=limits["max_pixels"])}
    except Refused as exc:
        answer = {"refused": str(exc)}
    except (av.FFmpegError, ValueError, StopIteration, MemoryError, OSError) as exc:
        answer = {"refused": f"it could not be read ({type(exc).__name__})"}
    conn.send_bytes(json.dumps(answer).encode())
    conn.close()
