"""What crosses from a GPU host is checked before anything reads it: file kinds by their bytes
(files.sniff), events against their schema (dispatch.schema), heartbeats (broker.heartbeats)."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

from generations.broker.heartbeats import _decode
from generations.dispatch import schema
from generations.dispatch.uploads import filename_clean
from generations.files import sniff


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * width * 3 for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_it_knows_a_file_by_its_bytes_not_its_name() -> None:
    assert sniff.kind_of(png(4, 3)) is sniff.PNG
    assert sniff.kind_of(b"\x00\x00\x00\x18ftypisom") is sniff.MP4
    assert sniff.kind_of(b"<html><script>") is None
    assert sniff.kind_of(b'<svg xmlns="http://www.w3.org/2000/svg">') is None


def test_it_reads_an_images_size_from_its_header() -> None:
    assert sniff.image_size(png(16000, 3)[:64], sniff.PNG) == (16000, 3)
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    jpeg = b"\xff\xd8" + app0 + b"\xff\xc0\x00\x11\x08\x00\x30\x00\x40"
    assert sniff.image_size(jpeg, sniff.JPEG) == (64, 48)


def test_it_keeps_a_preview_only_within_the_caps() -> None:
    assert sniff.preview_image(png(64, 48), max_bytes=65536, max_side=1024)[1:] == (64, 48)
    assert sniff.preview_image(png(2048, 2), max_bytes=65536, max_side=1024) is None
    assert sniff.preview_image(b"<html>", max_bytes=65536, max_side=1024) is None


def event(**fields) -> bytes:  # type: ignore[no-untyped-def]
    return json.dumps(
        {"type": "progress", "generation_id": 1, "attempt": 1, "worker": "gpu-a", "ts": 1.0, **fields}
    ).encode()


def test_it_accepts_a_well_formed_event() -> None:
    assert schema.event_parse(event(percent=50), host_username="gpu-a")["percent"] == 50


@pytest.mark.parametrize(
    "fields",
    [
        {"percent": float("inf")},
        {"percent": 1e308},
        {"generation_id": "1"},
        {"attempt": True},
        {"worker": "gpu-b"},  # another host's name
        {"message": "x" * 201},
        {"type": "wake"},  # only the web app wakes the conductor
        {"type": "exploded"},
    ],
)
def test_it_refuses_a_malformed_event(fields) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(schema.Invalid):
        schema.event_parse(event(**fields).replace(b"Infinity", b"1e999"), host_username="gpu-a")


def test_it_refuses_oversized_or_unreadable_data() -> None:
    for data in (b"x" * (schema.DATA_MAX_BYTES + 1), b"not json", b"[]", None):
        with pytest.raises(schema.Invalid):
            schema.event_parse(data, host_username=None)


def test_it_takes_links_out_of_a_failure_message() -> None:
    parsed = schema.event_parse(
        event(type="failed", message="log in at http://evil.example now"), host_username=None
    )
    assert parsed["message"] == "log in at [link removed] now"


def test_it_types_a_preview_by_its_bytes() -> None:
    image = base64.b64encode(png(32, 24)).decode()
    parsed = schema.event_parse(
        event(type="preview", image=image, content_type="text/html"), host_username=None
    )
    assert parsed["content_type"] == "image/png"
    with pytest.raises(schema.Invalid):
        schema.event_parse(
            event(type="preview", image=base64.b64encode(b"<html>").decode()), host_username=None
        )


def beat(**fields) -> dict[bytes, bytes]:  # type: ignore[no-untyped-def]
    values = {"name": "gpu-a", "state": "idle", "queues": "video", "ts": "1000.0", **fields}
    return {k.encode(): str(v).encode() for k, v in values.items()}


def test_it_drops_an_absurd_heartbeat() -> None:
    assert _decode(beat(), host="gpu-a") is not None
    assert _decode(beat(price_per_hour="-1e308"), host="gpu-a") is None
    assert _decode(beat(vram_gb="nan"), host="gpu-a") is None
    assert _decode(beat(name="gpu-b"), host="gpu-a") is None
    assert _decode(beat(state="owned"), host="gpu-a") is None


def test_it_cleans_a_file_name_and_takes_the_extension_it_found() -> None:
    assert filename_clean("out\x00.html", ".mp4") == "out.mp4"
    assert filename_clean('a"b\r\nc.mp4', ".webm") == "a_b_c.webm"
    assert filename_clean("../../etc/passwd", ".png") == "passwd.png"
    assert filename_clean("x" * 300 + ".mp4", ".mp4") == "x" * 80 + ".mp4"
    assert filename_clean("...", ".jpg") == "output.jpg"
