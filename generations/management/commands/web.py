"""`manage.py web`: the web side as several daphne processes behind one port.

Each process gets a listening socket of its own, bound with SO_REUSEPORT to the same address, so the
kernel spreads new connections evenly among them (on one shared socket, whichever process wakes
first would accept a whole burst). Sessions live in the database and the channel layer in Redis, so
any process serves any page, and a push reaches a socket whichever process holds it. A process that
dies is started again; SIGTERM or Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

APPLICATION = "workshop.asgi:application"
# A process that dies sooner than this after its start is broken, not unlucky: stop everything.
SETTLE_SECONDS = 10.0
# The sockets' reads and renders are CPU-bound Python: threads beyond a couple add no throughput (one
# interpreter lock) and starve the event loop, which then answers Redis and the sockets late.
THREADS = 2
# A burst of handshakes on a busy machine can take longer than daphne's 5 s; one that times out
# comes back (htmx reconnects) and costs its work again.
CONNECT_TIMEOUT_S = 30


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class Command(BaseCommand):
    help = "Serve the web app with N daphne processes on one port (WEB_PROCESSES)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--processes", type=int, default=settings.WEB_PROCESSES)
        parser.add_argument(
            "--proxy-headers", action="store_true", help="Trust X-Forwarded-For/-Proto (behind the proxy)"
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=int(os.environ.get("ASGI_THREADS", THREADS)),
            help="Worker threads per process for the sockets' reads and renders (daphne's ASGI_THREADS)",
        )
        parser.add_argument(
            "--websocket-connect-timeout",
            type=int,
            default=CONNECT_TIMEOUT_S,
            help="Seconds a handshake may wait for its consumer to accept (daphne's default: 5)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        count = opts["processes"]
        if count < 1:
            raise CommandError("--processes must be at least 1")
        extra = ["--websocket_connect_timeout", str(opts["websocket_connect_timeout"])]
        extra += ["--proxy-headers"] if opts["proxy_headers"] else []
        env = {**os.environ, "ASGI_THREADS": str(opts["threads"])}
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        def start() -> subprocess.Popen[bytes]:
            sock = listening_socket(opts["host"], opts["port"])
            try:
                fd = sock.fileno()
                command = [sys.executable, "-m", "daphne", "--fd", str(fd), *extra, APPLICATION]
                return subprocess.Popen(command, pass_fds=(fd,), env=env)
            finally:
                sock.close()  # the child holds it now: if it dies, the others take its connections

        address = f"{opts['host']}:{opts['port']}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            while len(procs) < count:
                procs.append(start())
        except OSError as exc:
            for proc in procs:
                proc.kill()
            raise CommandError(f"Cannot listen on {address}: {exc}") from exc
        started = [time.monotonic()] * count
        self.stdout.write(f"{count} web process(es) on {address}: {[p.pid for p in procs]}")
        try:
            while not stopping:
                time.sleep(0.5)
                for i, proc in enumerate(procs):
                    if proc.poll() is None or stopping:
                        continue
                    if time.monotonic() - started[i] < SETTLE_SECONDS:
                        raise CommandError(f"web process {proc.pid} exited with {proc.returncode} at start")
                    self.stderr.write(f"web process {proc.pid} exited with {proc.returncode}; starting one")
                    procs[i], started[i] = start(), time.monotonic()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
