#!/usr/bin/env python
"""The burst on the web side: everyone presses Generate at once while the live room and the screen
are open.

Runs daphne (or `manage.py web` with 2 processes), the conductor and two synthetic GPU workers on
PostgreSQL and Redis. For each N, N filmmakers with real sessions load the round page and hold its
WebSocket; the instructor holds the live room and the projector; then all N submit at the same
instant over HTMX. It measures:

  submit          the HTMX POST, sent to answered
  POST -> card    the POST sent, to the new job card arriving on that filmmaker's socket
  handshake       the round page's WebSocket handshake (all N at once)
  page GET        the round page (all N at once)
  errors          failed page loads, handshakes and submits (not 200, or no answer)
  dropped         sockets the server closed while held
  web RSS         peak resident memory of the web processes during the run (MB)

for N = 20, 100, 200 on one web process, and 200 on two (BENCH_SIZES, BENCH_TWO_WEB override them).
Usage: .venv/bin/python bench/burst_web.py    Prints a table, then one JSON line with goal_met.
The load generator shares the machine's cores: it is asyncio on one thread (httpx, websockets), each
filmmaker with a client (and a keep-alive connection) of their own, as each browser has. One pool
shared by all costs the load generator time that grows with N for every request (httpx looks over
every connection of its pool), taken from the server it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "20,100,200").split(",") if n]
TWO_WEB_AT = int(os.environ.get("BENCH_TWO_WEB", "200"))  # 0: skip the run on two web processes
HOLD_S = float(os.environ.get("BENCH_HOLD_S", "3"))  # sockets held after the last card, to see drops
CARD_TIMEOUT_S = 30.0
GOALS = {"submit_p95_20": 0.100, "card_p95_20": 0.250, "submit_p95_200": 0.500}
CARD = re.compile(r'id="gen-(\d+)"')


@dataclass
class Filmmaker:
    cookie: str
    csrf: str = field(default_factory=lambda: uuid.uuid4().hex)
    ws: Any = None
    http: Any = None  # the filmmaker's own httpx.AsyncClient
    seen: dict[int, float] = field(default_factory=dict)  # card id -> first arrival on the socket
    dropped: bool = False
    generation: int | None = None
    posted_at: float = 0.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
        except (OSError, StopIteration):
            pass
    return total / 1024


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def web_pids(stack: Any) -> list[int]:
    """The daphne processes: the web process itself, or the children of `manage.py web`."""
    pid = stack.procs["web"].pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return kids or [pid]


async def read_socket(person: Filmmaker, closing: asyncio.Event) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in person.ws:
            now = time.perf_counter()
            for gid in CARD.findall(str(message)):
                person.seen.setdefault(int(gid), now)
    except ConnectionClosed:
        pass
    if not closing.is_set():
        person.dropped = True


async def burst(base: str, people: list[Filmmaker], staff_cookie: str, round_id: int, template_id: int,
                pids: list[int]) -> dict[str, Any]:  # fmt: skip
    import httpx
    from websockets.asyncio.client import connect

    from bench.common import submit_data

    n = len(people)
    ws_base, origin = base.replace("http://", "ws://"), base
    errors: dict[str, int] = {"page": 0, "handshake": 0, "submit": 0}
    closing = asyncio.Event()
    peak = [rss_mb(pids)]
    baseline = peak[0]

    async def sample() -> None:
        while not closing.is_set():
            peak[0] = max(peak[0], rss_mb(pids))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    ssl = httpx.create_ssl_context()  # one for all clients: each would otherwise build its own
    async with contextlib.AsyncExitStack() as clients:
        for p in people:
            p.http = await clients.enter_async_context(
                httpx.AsyncClient(base_url=base, timeout=60, verify=ssl)
            )

        # The round pages, all at once.
        async def load(p: Filmmaker) -> float | None:
            start = time.perf_counter()
            try:
                r = await p.http.get(f"/rounds/{round_id}/", headers={"Cookie": p.cookie})
            except httpx.HTTPError:
                r = None
            if r is None or r.status_code != 200 or 'id="my-queue"' not in r.text:
                errors["page"] += 1
                return None
            return time.perf_counter() - start

        gets = [t for t in await asyncio.gather(*(load(p) for p in people)) if t is not None]

        # The live room and the projector, then every round page's socket at once.
        async def open_ws(path: str, cookie: str) -> Any:
            ws = await connect(ws_base + path, origin=origin, additional_headers={"Cookie": cookie},
                               open_timeout=45, max_size=None)  # fmt: skip
            return ws

        staff = [Filmmaker(cookie=staff_cookie), Filmmaker(cookie=staff_cookie)]
        for p, path in zip(staff, (f"/ws/instructor/rounds/{round_id}/", "/ws/screen/"), strict=True):
            p.ws = await open_ws(path, staff_cookie)

        async def handshake(p: Filmmaker) -> float | None:
            start = time.perf_counter()
            try:
                p.ws = await open_ws(f"/ws/rounds/{round_id}/", p.cookie)
            except Exception as exc:
                errors["handshake"] += 1
                print(f"  handshake failed: {exc!r}"[:200], file=sys.stderr)
                return None
            return time.perf_counter() - start

        shakes = [t for t in await asyncio.gather(*(handshake(p) for p in people)) if t is not None]
        connected = [p for p in people if p.ws is not None]
        readers = [asyncio.create_task(read_socket(p, closing)) for p in [*connected, *staff]]
        await asyncio.sleep(1.0)  # every page has its first state; the room has rendered

        # Everyone presses Generate at the same instant.
        async def submit(p: Filmmaker) -> float | None:
            data = submit_data(template_id)
            cookie = f"{p.cookie}; csrftoken={p.csrf}"
            headers = {"Cookie": cookie, "X-CSRFToken": p.csrf, "HX-Request": "true"}
            p.posted_at = time.perf_counter()
            try:
                r = await p.http.post(f"/rounds/{round_id}/generate", data=data, headers=headers)
            except httpx.HTTPError:
                r = None
            took = time.perf_counter() - p.posted_at
            ids = [int(i) for i in CARD.findall(r.text)] if r is not None and r.status_code == 200 else []
            if not ids:
                errors["submit"] += 1
                return None
            p.generation = max(ids)
            return took

        cpu_before, own_before, wall_before = cpu_s(pids), time.process_time(), time.perf_counter()
        submits = [t for t in await asyncio.gather(*(submit(p) for p in connected)) if t is not None]
        deadline = time.perf_counter() + CARD_TIMEOUT_S
        while time.perf_counter() < deadline and any(
            p.generation is not None and p.generation not in p.seen and not p.dropped for p in connected
        ):
            await asyncio.sleep(0.05)
        # The web side's own work for the burst (answers, pushes, the room), whatever else runs here.
        cpu_per_submit = (cpu_s(pids) - cpu_before) / max(len(submits), 1)
        # How busy this load generator was meanwhile (1.0: it was the bottleneck itself).
        loadgen_busy = (time.process_time() - own_before) / (time.perf_counter() - wall_before)
        await asyncio.sleep(HOLD_S)
        cards = [p.seen[p.generation] - p.posted_at for p in connected if p.generation in p.seen]
        missing = sum(1 for p in connected if p.generation is not None and p.generation not in p.seen)
        dropped = sum(p.dropped for p in [*connected, *staff])
        closing.set()
        await asyncio.gather(*(p.ws.close() for p in [*connected, *staff]), return_exceptions=True)
        for task in [*readers, sampler]:
            task.cancel()
    return {
        "n": n,
        "page_get_p50_s": pct(gets, 0.5),
        "handshake_p50_s": pct(shakes, 0.5),
        "handshake_p95_s": pct(shakes, 0.95),
        "connected": len(connected),
        "submit_p50_s": pct(submits, 0.5),
        "submit_p95_s": pct(submits, 0.95),
        "card_p50_s": pct(cards, 0.5),
        "card_p95_s": pct(cards, 0.95),
        "cards_missing": missing,
        "errors": sum(errors.values()) + missing,
        "errors_by_kind": errors,
        "dropped": dropped,
        "web_cpu_ms_per_submit": round(cpu_per_submit * 1000, 1),
        "loadgen_busy": round(loadgen_busy, 2),
        "web_rss_peak_mb": round(peak[0], 1),
        "web_rss_growth_mb": round(peak[0] - baseline, 1),
    }


def main() -> None:
    from bench.common import live_stack, round_with_synthetic, session_cookies, setup

    setup()
    from django.utils import timezone

    from accounts.models import User
    from generations.models import Generation, Round

    most = max([*SIZES, TWO_WEB_AT])
    users = User.objects.bulk_create(
        User(username=f"filmmaker{i:03d}", role=User.Role.FILMMAKER) for i in range(most)
    )
    instructor = User.objects.create(username="ines", role=User.Role.INSTRUCTOR, is_staff=True)
    cookies = session_cookies([*users, instructor])
    staff_cookie = cookies.pop()

    stack = live_stack("burst-web")
    rows: list[dict[str, Any]] = []
    try:
        stack.start_web(processes=1)  # as deployed: manage.py web
        stack.start_conductor()
        for i in (1, 2):  # a few seconds a job: the queue moves while the burst is measured
            stack.start_worker(f"bench-gpu-{i}", frame_delay=0.3)
        runs = [(n, 1) for n in SIZES] + ([(TWO_WEB_AT, 2)] if TWO_WEB_AT else [])
        processes = 1
        for n, want in runs:
            if want != processes:
                web = stack.procs.pop("web")
                web.send_signal(signal.SIGTERM)
                web.wait(timeout=30)
                stack.start_web(processes=want)
                processes = want
            # A fresh round per run; the previous one's queue is cancelled, as a closing round's is.
            Generation.objects.filter(status=Generation.Status.QUEUED).update(
                status=Generation.Status.CANCELLED, finished_at=timezone.now()
            )
            Round.objects.filter(status=Round.Status.OPEN).update(status=Round.Status.CLOSED)
            rnd, template = round_with_synthetic(f"Burst {n} x{want}", quota=5)
            people = [Filmmaker(cookie=c) for c in cookies[:n]]
            time.sleep(1.0)  # the conductor publishes the emptied line
            row = asyncio.run(burst(stack.url, people, staff_cookie, rnd.pk, template.pk, web_pids(stack)))
            row["web_processes"] = want
            rows.append(row)
            print(f"  N={n} on {want} web process(es): done", file=sys.stderr)
    finally:
        stack.stop()

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f}"

    print(
        f"Burst on the web side: N filmmakers submit at once, room and screen open (ms); logs: {stack.logs}"
    )
    head = ["N", "web", "submit p50", "p95", "card p50", "p95", "shake p50", "p95", "GET p50"]
    head += ["conn", "err", "drop", "RSS MB", "CPU/submit"]
    print("".join(f"{h:>11}" for h in head))
    for r in rows:
        timings = ["submit_p50_s", "submit_p95_s", "card_p50_s", "card_p95_s", "handshake_p50_s"]
        timings += ["handshake_p95_s", "page_get_p50_s"]
        cells = [r["n"], r["web_processes"], *(ms(r[k]) for k in timings)]
        cells += [f"{r['connected']}/{r['n']}", r["errors"], r["dropped"], r["web_rss_peak_mb"]]
        cells += [r["web_cpu_ms_per_submit"]]
        print("".join(f"{c!s:>11}" for c in cells))

    def row(n: int, processes: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["n"] == n and r["web_processes"] == processes), None)

    checks: dict[str, bool] = {}
    if (small := row(20, 1)) is not None:
        checks["n20_submit_p95"] = (small["submit_p95_s"] or 99) <= GOALS["submit_p95_20"]
        checks["n20_card_p95"] = (small["card_p95_s"] or 99) <= GOALS["card_p95_20"]
        checks["n20_clean"] = small["errors"] == 0 and small["dropped"] == 0
    if (big := row(200, 1)) is not None:
        checks["n200_all_connected"] = big["connected"] == 200
        checks["n200_clean"] = big["errors"] == 0
        checks["n200_submit_p95"] = (big["submit_p95_s"] or 99) <= GOALS["submit_p95_200"]
        if (two := row(200, 2)) is not None:
            checks["n200_two_web_better"] = (two["submit_p95_s"] or 99) < (big["submit_p95_s"] or 99)
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")
    met = bool(checks) and all(checks.values())
    print(json.dumps({"runs": rows, "goals": GOALS, "checks": checks, "goal_met": met}))


if __name__ == "__main__":
    main()
