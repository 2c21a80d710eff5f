"""A private redis-server with ACLs on, for the tests that run the real processes.

ACL users belong to a whole Redis server, not to one of its databases: tests that create them must
not do it on the shared Redis every test run on this machine uses. Each run starts its own server
on a free port (once, when a test first needs it): the default user is the admin (a password), the
web app and the conductor get their own users (``broker.acl.APP_RULES``), and every GPU worker its
enrolled host's user, as in production.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import redis

WEB_USER, CONDUCTOR_USER = "workshop-web", "workshop-conductor"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """`persist`: it saves its data on the way down and loads it back, like a Redis with RDB (else a
    restart loses it)."""

    def __init__(self, folder: Path, *, persist: bool = False) -> None:
        self.folder = folder
        self.persist = persist
        self.port = free_port()
        self.admin_password = secrets.token_hex(16)
        self.passwords = {WEB_USER: secrets.token_hex(16), CONDUCTOR_USER: secrets.token_hex(16)}
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, db: int = 0) -> str:
        if user is None:
            return f"redis://:{self.admin_password}@127.0.0.1:{self.port}/{db}"
        password = urllib.parse.quote(self.passwords[user], safe="")
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.url())

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH (Debian: apt-get install redis-server)"
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "3600 1" if self.persist else "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.folder),
                "--requirepass",
                self.admin_password,
                "--acllog-max-len",
                "1024",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.admin().ping()
                break
            except redis.ConnectionError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        self.app_users()
        return self

    def app_users(self) -> None:
        from generations.broker import acl

        conn = self.admin()
        for user, password in self.passwords.items():
            acl.app_user(conn, user, password)

    def reset(self) -> None:
        """Between tests: no data, no users but the app's, an empty ACL log."""
        from generations.broker import acl

        conn = self.admin()
        conn.flushall()
        for user in acl.users(conn) - {"default", *self.passwords}:
            conn.execute_command("ACL", "DELUSER", user)
        conn.execute_command("ACL", "LOG", "RESET")
        self.app_users()

    def acl_log(self) -> list[dict[str, str]]:
        entries = self.admin().execute_command("ACL", "LOG", "1024")
        out = []
        for entry in entries:
            pairs = dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list) else entry
            out.append(
                {
                    (k.decode() if isinstance(k, bytes) else k): (
                        v.decode() if isinstance(v, bytes) else str(v)
                    )
                    for k, v in pairs.items()
                }
            )
        return out

    def restart(self) -> None:
        """Stopped and started again on the same port: its data kept only with `persist`, and the
        users made at run time lost (no ACL file), the app's made again as from its config."""
        self.stop()
        self.proc = None
        self.start()

    def restart_empty(self) -> None:
        """Redis restarted without its data or the users made at run time (no ACL file)."""
        assert not self.persist, "a persisting server keeps its data over a restart"
        self.restart()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
