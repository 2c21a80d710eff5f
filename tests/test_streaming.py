"""A large streamed download to a slow client keeps the web server's memory flat (daphne has no
backpressure of its own: workshop.asgi.paced provides it)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.files.base import ContentFile

from generations.dispatch import attempts
from generations.models import Take

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def circled_takes(generation, count: int, size: int) -> None:
    # Incompressible files of this size are not videos the upload would accept: stored directly.
    attempts.generation_dispatch(generation=generation)
    for i in range(count):
        take = Take(generation=generation, attempt=1, filename=f"part{i}.mp4", kind="video", size=size)
        take.content_type = "video/mp4"
        take.file.save(take.filename, ContentFile(os.urandom(size)), save=False)
        take.save()
    attempts.event_apply({"type": "succeeded", "generation_id": generation.pk, "attempt": 1})
    Take.objects.update(circled=True)


def session_for(user) -> str:
    session = SessionStore()
    session["_auth_user_id"], session["_auth_user_backend"] = (
        str(user.pk),
        settings.AUTHENTICATION_BACKENDS[0],
    )
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def test_a_slow_client_does_not_make_the_server_hold_the_zip(live_stack, owner, generation) -> None:
    circled_takes(generation, count=6, size=8 * MB)  # a 48 MB ZIP, incompressible
    live_stack.start_web()
    pid = live_stack.procs["web"].pid
    with socket.create_connection(("127.0.0.1", live_stack.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        cookie = f"Cookie: sessionid={session_for(owner)}\r\nConnection: close"
        request = f"GET /gallery/circled.zip HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}\r\n\r\n"
        sock.sendall(request.encode())
        head = sock.recv(64 * 1024)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        before = rss_mb(pid)
        time.sleep(4)  # the client reads nothing: a paced server waits, an unpaced one buffers it all
        grown = rss_mb(pid) - before
        received = len(head)
        while chunk := sock.recv(1024 * 1024):
            received += len(chunk)
    assert grown < 16, f"daphne grew by {grown:.0f} MB while the client did not read"
    assert received > 48 * MB


def large_take(generation, size: int) -> Take:
    """A succeeded take of `size` bytes (a sparse file: no disk space, read at memory speed)."""
    attempts.generation_dispatch(generation=generation)
    name = f"takes/r{generation.round_id}/g{generation.pk}/a1/large.mp4"
    path = settings.MEDIA_ROOT / name
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        f.truncate(size)
    take = Take.objects.create(
        generation=generation, attempt=1, filename="large.mp4", kind="video", content_type="video/mp4",
        file=name, size=size,
    )  # fmt: skip
    attempts.event_apply({"type": "succeeded", "generation_id": generation.pk, "attempt": 1})
    return take


def head_of(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    return data


def test_it_serves_a_large_take_to_slow_readers_in_constant_memory(live_stack, owner, generation) -> None:
    take = large_take(generation, 200 * MB)
    live_stack.start_web()
    pid = live_stack.procs["web"].pid
    cookie = f"Cookie: sessionid={session_for(owner)}\r\nConnection: close"
    request = f"GET /takes/{take.pk}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}\r\n\r\n".encode()
    readers = []
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", live_stack.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request)
        readers.append(sock)
    heads = [head_of(sock) for sock in readers]
    statuses = [h.split(b"\r\n", 1)[0] for h in heads]
    assert statuses == [b"HTTP/1.1 200 OK"] * 5
    assert all(b"\r\nContent-Length: 209715200\r\n" in h for h in heads)
    before = rss_mb(pid)
    received = 0
    for _ in range(40):  # 4 s of slow readers: 64 KB each every 0.1 s
        for sock in readers:
            received += len(sock.recv(64 * 1024))
        time.sleep(0.1)
    grown = rss_mb(pid) - before
    for sock in readers:
        sock.close()
    assert received > 5 * MB  # they did read, slowly
    assert grown < 20, f"daphne grew by {grown:.0f} MB serving 5 slow readers of a 200 MB take"
