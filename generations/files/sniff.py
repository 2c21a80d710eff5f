"""What a file is, by its first bytes alone: the allowed video and image containers, and an image's
size from its header (before anything decodes it). Pure Python: the media probe's child process and
the preview check both use it, and neither trusts a name or a Content-Type."""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEAD_BYTES = 1024 * 1024  # how much of a file sniff() wants (a JPEG's size may follow its EXIF)


@dataclass(frozen=True)
class Kind:
    name: str
    content_type: str
    extension: str
    kind: str  # "video" or "image"
    demuxer: str  # the only FFmpeg demuxer the probe may use for it


PNG = Kind("png", "image/png", ".png", "image", "png_pipe")
JPEG = Kind("jpeg", "image/jpeg", ".jpg", "image", "jpeg_pipe")
WEBP = Kind("webp", "image/webp", ".webp", "image", "webp_pipe")
GIF = Kind("gif", "image/gif", ".gif", "image", "gif")
MP4 = Kind("mp4", "video/mp4", ".mp4", "video", "mov")
MOV = Kind("mov", "video/quicktime", ".mov", "video", "mov")
WEBM = Kind("webm", "video/webm", ".webm", "video", "matroska")
MKV = Kind("mkv", "video/x-matroska", ".mkv", "video", "matroska")

MEDIA_TYPES = frozenset(k.content_type for k in (PNG, JPEG, WEBP, GIF, MP4, MOV, WEBM, MKV))
PREVIEW_KINDS = (PNG, JPEG, WEBP)


def kind_of(head: bytes) -> Kind | None:
    """The allowed container these bytes start, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[4:8] == b"ftyp":
        return MOV if head[8:12] == b"qt  " else MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # The EBML header names its DocType near the start.
        if b"webm" in head[:64]:
            return WEBM
        if b"matroska" in head[:64]:
            return MKV
    return None


def image_size(head: bytes, kind: Kind) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding; None when it cannot be read."""
    try:
        if kind is PNG and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])  # type: ignore[return-value]
        if kind is GIF:
            return struct.unpack("<HH", head[6:10])  # type: ignore[return-value]
        if kind is WEBP:
            return _webp_size(head)
        if kind is JPEG:
            return _jpeg_size(head)
    except struct.error:
        return None
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20:21] == b"\x2f":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", head[i + 2 : i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return width, height
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def preview_image(data: bytes, *, max_bytes: int, max_side: int) -> tuple[Kind, int, int] | None:
    """A preview frame's kind and size when it is a PNG, JPEG or WebP within the caps; else None."""
    if len(data) > max_bytes:
        return None
    kind = kind_of(data[:64])
    if kind not in PREVIEW_KINDS:
        return None
    size = image_size(data, kind)  # type: ignore[arg-type]
    if size is None or not (0 < size[0] <= max_side and 0 < size[1] <= max_side):
        return None
    return kind, size[0], size[1]  # type: ignore[return-value]
