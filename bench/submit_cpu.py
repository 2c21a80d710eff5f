#!/usr/bin/env python
"""What one submit answer costs: CPU and queries, one filmmaker at a time, with nothing else running.

bench/burst_web.py measures the burst, where the answers share two cores with everything else and
runs vary by a third; this measures the answer alone, to a tenth of a millisecond, so a change to the
submit path can be judged in one run. Each of N filmmakers (real sessions) submits once, in turn:

  in-process   the ASGI application called directly (Django, the middleware and the view; no server)
  daphne       over HTTP to a real daphne, whose own CPU is read from /proc (its HTTP and ASGI work too)

and it reports CPU per answer (this process's, or daphne's), wall time per answer, and database
queries per answer (in-process only), plus PostgreSQL's CPU per answer over both runs.

CPU time on a shared machine swings with its neighbours (twofold within an hour here), so it also
counts the Python function calls of an answer, in-process, in a pass of its own under a profile hook
(every thread: the event loop's and the request's). The count is the same from run to run (to 0.1%)
whatever else runs: a change to the submit path shows in it at once.

Goal: daphne's CPU per answer ≤ 5 ms, the budget the burst's goal implies (bench/burst_web.py: twenty
answers within 100 ms on one web process).
Usage: .venv/bin/python bench/submit_cpu.py   Prints a table, then one JSON line with goal_met.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import submit_data  # noqa: E402

N = int(os.environ.get("BENCH_SUBMITS", "300"))
WARM = 10  # answers before measuring: templates compiled, pools filled
CALLS_N = 100  # answers whose calls are counted (the count varies by less than 0.1%)
GOAL_MS = 5.0
CSRF = "a" * 32


def headers(cookie: str) -> dict[str, str]:
    return {"Cookie": f"{cookie}; csrftoken={CSRF}", "X-CSRFToken": CSRF, "HX-Request": "true"}


def postgres_cpu_s() -> float:
    """CPU seconds of the PostgreSQL server and of the sessions it has reaped (the postmaster's
    children), or nan where the server is not a process of this machine we can read."""
    from bench.burst_web import cpu_s

    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"/postgres") and b"-D" in cmdline:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
            return cpu_s([int(pid)]) + children
    return float("nan")


class QueryCount:
    """Queries of every thread's connection (the view runs on one of asgiref's threads)."""

    def __init__(self) -> None:
        from django.db.backends.signals import connection_created

        self.n = 0
        connection_created.connect(self._watch, weak=False)

    def _watch(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if not getattr(connection, "_bench_counted", False):
            connection._bench_counted = True
            connection.execute_wrappers.append(self._count)

    def _count(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.n += 1
        return execute(sql, params, many, context)


async def asgi_post(app: Any, path: str, body: bytes, cookie: str) -> int:
    head = [(k.lower().encode(), v.encode()) for k, v in headers(cookie).items()]
    head += [(b"host", b"localhost"), (b"content-type", b"application/x-www-form-urlencoded")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": head, "client": ("127.0.0.1", 1),
             "server": ("localhost", 80)}  # fmt: skip
    received = asyncio.Event()
    status = [0]

    async def receive() -> dict[str, Any]:
        if received.is_set():
            await asyncio.Event().wait()  # the client never goes away
        received.set()
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(scope, receive, send)
    return status[0]


async def post_in_process(round_id: int, template_id: int, cookie: str) -> None:
    """One submission to the ASGI application called directly; it must be accepted."""
    from workshop.asgi import application

    body = urlencode(submit_data(template_id)).encode()
    assert await asgi_post(application, f"/rounds/{round_id}/generate", body, cookie) == 200


def in_process(cookies: list[str], round_id: int, template_id: int, queries: QueryCount) -> dict[str, Any]:
    async def post(cookie: str) -> None:
        await post_in_process(round_id, template_id, cookie)

    async def run() -> dict[str, Any]:
        for cookie in cookies[:WARM]:
            await post(cookie)
        measured = cookies[WARM:]
        queries.n = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for cookie in measured:
            await post(cookie)
        n = len(measured)
        return {"path": "in-process", "answers": n, "cpu_ms": (time.process_time() - cpu) / n * 1000,
                "wall_ms": (time.perf_counter() - wall) / n * 1000, "queries": queries.n / n}  # fmt: skip

    return asyncio.run(run())


def calls_per_answer(cookies: list[str], round_id: int, template_id: int) -> float:
    """Python function calls per answer, in-process, every thread counted (after WARM answers)."""
    import threading

    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    async def run() -> None:
        for i, cookie in enumerate(cookies):
            if i == WARM:
                threading.setprofile_all_threads(count)
            await post_in_process(round_id, template_id, cookie)

    try:
        asyncio.run(run())
    finally:
        threading.setprofile_all_threads(None)
    return calls / (len(cookies) - WARM)


def over_daphne(cookies: list[str], round_id: int, template_id: int) -> dict[str, Any]:
    import httpx

    from bench.burst_web import cpu_s, web_pids
    from bench.common import live_stack

    stack = live_stack("submit-cpu")
    try:
        stack.start_web(processes=1)  # as deployed: manage.py web
        pids = web_pids(stack)
        with httpx.Client(base_url=stack.url, timeout=30) as http:

            def post(cookie: str) -> None:
                r = http.post(
                    f"/rounds/{round_id}/generate", data=submit_data(template_id), headers=headers(cookie)
                )
                assert r.status_code == 200, r.status_code

            for cookie in cookies[:WARM]:
                post(cookie)
            measured = cookies[WARM:]
            cpu, wall = cpu_s(pids), time.perf_counter()
            for cookie in measured:
                post(cookie)
            n = len(measured)
            return {"path": "daphne", "answers": n, "cpu_ms": (cpu_s(pids) - cpu) / n * 1000,
                    "wall_ms": (time.perf_counter() - wall) / n * 1000, "queries": None}  # fmt: skip
    finally:
        stack.stop()


def main() -> None:
    from bench.common import round_with_synthetic, session_cookies, setup

    setup()
    from accounts.models import User

    queries = QueryCount()
    users = User.objects.bulk_create(
        User(username=f"filmmaker{i:03d}", role=User.Role.FILMMAKER) for i in range(2 * (N + WARM) + CALLS_N)
    )
    cookies = session_cookies(users)
    rnd, template = round_with_synthetic("Submit CPU", quota=5)
    pg_before = postgres_cpu_s()
    rows = [in_process(cookies[: N + WARM], rnd.pk, template.pk, queries)]
    rows.append(over_daphne(cookies[N + WARM : 2 * (N + WARM)], rnd.pk, template.pk))
    answers = 2 * (N + WARM)
    pg_ms = (postgres_cpu_s() - pg_before) / answers * 1000
    calls = calls_per_answer(cookies[2 * (N + WARM) - WARM :], rnd.pk, template.pk)

    print("One submit answer at a time (ms per answer)")
    print(f"{'path':>12}{'answers':>9}{'CPU':>8}{'wall':>8}{'queries':>9}")
    for r in rows:
        q = "-" if r["queries"] is None else f"{r['queries']:.1f}"
        print(f"{r['path']:>12}{r['answers']:>9}{r['cpu_ms']:>8.2f}{r['wall_ms']:>8.2f}{q:>9}")
    print(f"PostgreSQL CPU per answer (both runs): {pg_ms:.2f} ms")
    print(f"Python calls per answer (in-process, counted: the same whatever the machine's load): {calls:.0f}")
    daphne_ms = rows[1]["cpu_ms"]
    met = daphne_ms <= GOAL_MS
    print(f"  {'ok  ' if met else 'MISS'} daphne CPU per answer {daphne_ms:.2f} ms (goal ≤ {GOAL_MS} ms)")
    for r in rows:
        r.update({k: round(v, 2) for k, v in r.items() if isinstance(v, float)})
    figures = {"rows": rows, "postgres_cpu_ms": round(pg_ms, 2), "python_calls_per_answer": round(calls)}
    print(json.dumps({**figures, "goal_ms": GOAL_MS, "goal_met": met}))


if __name__ == "__main__":
    main()
