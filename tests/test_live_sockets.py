"""The round page's sockets on real daphne processes: idle sockets stay open (the channel layer's Redis
connection does not race channels-redis's blocking read), and a push reaches a socket whichever web
process holds it (`manage.py web` runs several behind one port)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from generations.live import groups
from tests.conftest import VALID
from tests.live import free_port, wait_for
from tests.test_streaming import session_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def open_pages(base: str, round_id: int, cookie: str, n: int) -> list[ClientConnection]:
    """n round pages' sockets, each past its first message (the page's state)."""
    origin = base.replace("ws://", "http://")

    async def one() -> ClientConnection:
        ws = await connect(
            f"{base}/ws/rounds/{round_id}/",
            origin=origin,
            additional_headers={"Cookie": cookie},
            open_timeout=30,
        )
        await asyncio.wait_for(ws.recv(), timeout=30)
        return ws

    sockets: list[ClientConnection] = []
    for start in range(0, n, 20):  # a few at a time: this is not a handshake benchmark
        sockets += await asyncio.gather(*(one() for _ in range(min(20, n - start))))
    return sockets


async def first_matching(ws: ClientConnection, needle: str, timeout: float) -> bool:
    async def read() -> bool:
        while needle not in str(await ws.recv()):
            pass
        return True

    try:
        return await asyncio.wait_for(read(), timeout)
    except (TimeoutError, ConnectionClosed):
        return False


def announce() -> None:
    groups.announcements_changed()
    connections.close_all()  # on_commit opened one on asgiref's thread: let the test database go


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_it_keeps_100_idle_sockets_open_for_a_minute(live_stack, owner, open_round) -> None:
    live_stack.start_web()
    cookie = f"sessionid={session_for(owner)}"

    async def scenario() -> tuple[Counter[str], int]:
        sockets = await open_pages(live_stack.url.replace("http", "ws"), open_round.pk, cookie, 100)
        closed: Counter[str] = Counter()

        async def watch(ws: ClientConnection) -> None:
            try:
                async for _ in ws:
                    pass
            except ConnectionClosed:
                pass
            closed[str(ws.close_code)] += 1

        watchers = [asyncio.create_task(watch(ws)) for ws in sockets]
        await asyncio.sleep(60)  # idle: nothing is sent either way (but daphne's pings)
        dropped = Counter(closed)
        for task in watchers:
            task.cancel()
        # Still alive, not just open: a push reaches every one of them.
        await sync_to_async(announce)()
        reached = await asyncio.gather(*(first_matching(ws, 'id="announcements"', 15) for ws in sockets))
        await asyncio.gather(*(ws.close() for ws in sockets))
        return dropped, sum(reached)

    closed, reached = asyncio.run(scenario())
    assert closed == Counter(), f"sockets closed while idle, by close code: {dict(closed)}"
    assert reached == 100


def submit_over_http(base: str, round_id: int, cookie: str, template_id: int) -> int:
    """The round page's HTMX submit; returns the new generation's id."""
    csrf = uuid.uuid4().hex
    response = httpx.post(
        f"{base}/rounds/{round_id}/generate",
        data={**VALID, "template": str(template_id), "submit_token": str(uuid.uuid4())},
        headers={"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf, "HX-Request": "true"},
        timeout=30,
    )
    assert response.status_code == 200, response.text[:500]
    return max(int(i) for i in re.findall(r'id="gen-(\d+)"', response.text))


def test_it_pushes_to_a_socket_held_by_another_web_process(live_stack, owner, open_round, template) -> None:
    web_a = live_stack.start_web("web-a")
    web_b = live_stack.start_web("web-b", port=free_port())
    cookie = f"sessionid={session_for(owner)}"

    async def scenario() -> bool:
        [ws] = await open_pages(web_b.replace("http", "ws"), open_round.pk, cookie, 1)
        gid = await asyncio.to_thread(submit_over_http, web_a, open_round.pk, cookie, template.pk)
        arrived = await first_matching(ws, f'id="gen-{gid}"', 15)
        await ws.close()
        return arrived

    assert asyncio.run(scenario()), "the card submitted on web process A never reached the socket on B"


def sockets_per_process(launcher_pid: int, port: int) -> dict[int, int]:
    """child pid -> established TCP connections it holds on `port` (read from /proc)."""
    children = [
        int(p) for p in Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    ]
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            established.add(fields[9])
    held = {}
    for pid in children:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        held[pid] = sum(f"socket:[{inode}]" in inodes for inode in established)
    return held


def test_it_spreads_sockets_over_the_web_processes_and_pushes_to_all(
    live_stack, owner, open_round, template
) -> None:
    base = live_stack.start_web(processes=2)
    cookie = f"sessionid={session_for(owner)}"
    wait_for(
        lambda: len(sockets_per_process(live_stack.procs["web"].pid, live_stack.port)) == 2, what="2 daphnes"
    )

    async def scenario() -> tuple[dict[int, int], int]:
        sockets = await open_pages(base.replace("http", "ws"), open_round.pk, cookie, 16)
        held = sockets_per_process(live_stack.procs["web"].pid, live_stack.port)
        gid = await asyncio.to_thread(submit_over_http, base, open_round.pk, cookie, template.pk)
        reached = await asyncio.gather(*(first_matching(ws, f'id="gen-{gid}"', 15) for ws in sockets))
        await asyncio.gather(*(ws.close() for ws in sockets))
        return held, sum(reached)

    held, reached = asyncio.run(scenario())
    assert len(held) == 2 and all(n > 0 for n in held.values()), f"sockets per web process: {held}"
    assert reached == 16
