"""Attack 6: a 730 KB PNG of 16000x16000 sent as video/mp4 cost 56 s of CPU and 850 MB in the web
process; a 200 MiB body with a bogus token was stored in full before its 403; odd file names gave
500s. Now the probe runs in a limited child process and reads an image's size before decoding it,
bodies are refused before they are read (workshop/bodygate.py), and names are cleaned."""

from __future__ import annotations

import base64
import json
import select
import socket
import struct
import time
import zlib
from pathlib import Path

import httpx
import pytest

from generations.models import Take
from tests.live import wait_for
from tests.media import make_video
from tests.security.conftest import browser, status_of, submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
MB = 1024 * 1024


def huge_png(side: int) -> bytes:
    """A valid 1-bit grey PNG, side x side, that compresses to a few hundred KB."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024


def bytes_taken_before_refusal(port: int, path: str, auth: str, size: int) -> tuple[bytes, int]:
    """PUT ``size`` bytes to ``path``; (the status line, bytes the server let in before it answered)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n{auth}\r\n\r\n"
        sock.sendall(head.encode())
        sent, chunk = 0, b"\x00" * (64 * 1024)
        deadline = time.monotonic() + 60
        while sent < size and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(chunk)
                except OSError:
                    break
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    print(f"PUT {path[:40]}: {status.decode()} after {sent / MB:.2f} MiB of {size / MB:.0f} MiB sent")
    return status, sent


def test_a_huge_image_costs_the_web_process_nothing(
    stack, mallory, filmmaker, video_round, bait_template
) -> None:
    legit = submit(filmmaker, video_round)
    submit(filmmaker, video_round, bait_template)
    held = mallory.take("image")
    png = huge_png(16000)
    assert len(png) < 1 * MB
    web = stack.procs["web"].pid
    before, started = peak_mb(web), time.monotonic()
    response = httpx.put(
        held["upload_url"] + "frame.mp4",
        content=png,
        auth=mallory.auth,
        headers={"Content-Type": "video/mp4"},
        timeout=60,
    )
    assert response.status_code == 415 and "16000x16000" in response.text
    assert time.monotonic() - started < 10
    assert peak_mb(web) - before < 100
    succeeds(stack, legit)


def test_a_body_is_refused_before_it_is_read(stack, mallory, filmmaker, video_round) -> None:
    legit = submit(filmmaker, video_round, frames=25)
    basic = (
        "Authorization: Basic " + base64.b64encode(f"{mallory.username}:{mallory.secret}".encode()).decode()
    )
    # A bogus token: refused from the headers alone.
    status, sent = bytes_taken_before_refusal(stack.port, "/api/uploads/bogus/x.mp4", basic, 200 * MB)
    assert b" 403 " in status and sent < 4 * MB, (status, sent)
    # A real token (read from RQ) with another host's credential: refused once the database says so.
    wait_for(lambda: status_of(legit) == "running", timeout=30, what="the honest worker to start")
    data = mallory.redis.hget(f"rq:job:gen-{legit.pk}-a1", "data")
    upload_url = httpx.URL(json.loads(zlib.decompress(data))[3]["upload_url"])
    status, sent = bytes_taken_before_refusal(
        stack.port, upload_url.raw_path.decode() + "x.mp4", basic, 200 * MB
    )
    assert b" 403 " in status and sent < 4 * MB, (status, sent)
    # No credential at all, and anything else too large.
    status, sent = bytes_taken_before_refusal(
        stack.port, upload_url.raw_path.decode() + "x.mp4", "X-No: 1", 200 * MB
    )
    assert b" 401 " in status and sent < 4 * MB, (status, sent)
    status, sent = bytes_taken_before_refusal(stack.port, "/accounts/login/", "X-No: 1", 200 * MB)
    assert b" 413 " in status and sent < 4 * MB, (status, sent)
    succeeds(stack, legit)


def test_odd_file_names_are_cleaned_never_a_500(
    stack, mallory, filmmaker, video_round, bait_template, instructor, tmp_path: Path
) -> None:
    submit(filmmaker, video_round, bait_template)
    held = mallory.take("image")
    video = make_video(tmp_path / "v.mp4").read_bytes()
    names = [
        "nul%00.mp4",
        "crlf%0d%0aSet-Cookie:%20x=1.mp4",
        'quo"te.mp4',
        "a" * 230 + ".mp4",
        "..%2f..%2fetc.mp4",
    ]
    for name in names:
        response = httpx.put(held["upload_url"] + name, content=video, auth=mallory.auth, timeout=60)
        assert response.status_code in (201, 400, 404), (name, response.status_code)
    takes = list(Take.objects.filter(generation_id=held["generation_id"]))
    assert takes and all(t.filename.endswith(".mp4") and len(t.filename) <= 84 for t in takes)
    with browser(stack, instructor) as client:
        for take in takes:
            served = client.get(f"/takes/{take.pk}/file", params={"download": "1"})
            assert served.status_code == 200
            assert served.headers["content-disposition"] == f'attachment; filename="{take.filename}"'
