"""A large streamed download to a slow client keeps the web server's memory flat (daphne has no
backpressure of its own: workshop.asgi.paced provides it)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from generations.dispatch import attempts, uploads
from generations.models import Take

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def circled_takes(generation, count: int, size: int) -> None:
    attempts.generation_dispatch(generation=generation)
    token = uploads.upload_url(generation=generation).rstrip("/").rsplit("/", 1)[1]
    for i in range(count):
        uploads.take_store(token=token, filename=f"part{i}.bin", chunks=[os.urandom(size)])
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
