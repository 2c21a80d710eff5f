"""The real processes of the workshop, started against the test database and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.redis_server import CONDUCTOR_USER, WEB_USER, RedisServer

ROOT = Path(__file__).resolve().parent.parent
WORKER_PYTHON = os.environ.get("GPU_WORKER_PYTHON", str(ROOT / ".venv-worker" / "bin" / "python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class LiveStack:
    """daphne, the conductor and GPU workers as subprocesses; logs go to files in `logs`.

    On ``redis_server`` (a private Redis with ACLs) each process uses its own user, as in
    production: the web app and the conductor theirs, and every GPU worker the credential of a host
    enrolled for it (``enrol``). ``redis_url`` is what the processes get otherwise."""

    def __init__(
        self,
        *,
        database: str,
        redis_url: str,
        media_root: Path,
        logs: Path,
        redis_server: RedisServer | None = None,
    ) -> None:
        assert Path(WORKER_PYTHON).exists(), (
            f"the GPU worker's Python is missing: {WORKER_PYTHON} (run deploy/test.sh)"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        from django.conf import settings

        self.env = {
            **os.environ,
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            # The channel layer's Pub/Sub names: the same as this process's, whatever Redis database
            # the stack's processes are on, so that a push the test sends reaches their sockets.
            "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
            "MEDIA_ROOT": str(media_root),
            "PUBLIC_BASE_URL": self.url,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self.redis_server = redis_server
        self.hosts: dict[str, dict[str, str]] = {}  # worker name -> its enrolled host's environment

    def _env_of(self, user: str) -> dict[str, str]:
        if self.redis_server is None:
            return self.env
        return {**self.env, "REDIS_URL": self.redis_server.url(user)}

    def enrol(self, name: str) -> dict[str, str]:
        """Enrol a GPU host named ``name`` through the real service; its workers' environment."""
        from generations.fleet.hosts import host_enrol

        assert self.redis_server is not None, "enrolling needs the private Redis with ACLs"
        enrolment = host_enrol(name=name, kind="local", conn=self.redis_server.admin())
        self.hosts[name] = enrolment.environment
        return enrolment.environment

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        # Each in its own process group, so a kill takes a worker's work-horse too, as when a host dies.
        self.procs[name] = subprocess.Popen(
            cmd, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_web(self, name: str = "web", *, port: int | None = None, processes: int | None = None) -> str:
        """daphne on `port` (the stack's own by default); with `processes`, `manage.py web`: that many
        daphne processes behind the one port. Returns its base URL once it answers."""
        port = port or self.port
        if processes is None:
            command = [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "workshop.asgi:application",
            ]
        else:
            command = [sys.executable, "manage.py", "web", "--port", str(port), "--processes", str(processes)]
        self._spawn(name, command, self._env_of(WEB_USER))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/accounts/login/", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert self.procs[name].poll() is None, self.log(name)
            time.sleep(0.1)
        raise AssertionError("daphne did not answer in 30 s\n" + self.log(name))

    def start_conductor(self, name: str = "conductor") -> None:
        """A conductor; start a second under another name for a standby."""
        self._spawn(
            name,
            [sys.executable, "manage.py", "conductor", "--block-ms", "200"],
            self._env_of(CONDUCTOR_USER),
        )

    def start_worker(
        self,
        name: str = "e2e-gpu-1",
        *,
        frame_delay: float = 0.0,
        backend: str = "synthetic",
        comfyui_url: str | None = None,
    ) -> None:
        """A GPU worker on the `video` queue (the one every template of the tests names): the
        synthetic backend, or `backend="comfyui"` driving the ComfyUI at `comfyui_url`. On the private
        Redis it runs as a host enrolled under its name (once), so its name is that host's user."""
        options = ["--synthetic-frame-delay", str(frame_delay)]
        if backend == "comfyui":
            assert comfyui_url, "the comfyui backend needs comfyui_url"
            options = ["--comfyui-url", comfyui_url]
        env = {**self.env, "JOB_VERIFY_KEY": _verify_key()}
        if self.redis_server is not None:
            env.update(self.hosts.get(name) or self.enrol(name))
        self._spawn(
            name,
            [
                WORKER_PYTHON,
                "-m",
                "gpu_worker",
                "run",
                "--name",
                env.get("GPU_WORKER_NAME", name),
                "--queues",
                "video",
                "--backend",
                backend,
                *options,
            ],
            env,
        )

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group and every descendant (RQ's work-horse has a group of
        its own): no cleanup, as when a host vanishes."""
        proc = self.procs.pop(name)
        family = descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def kill_parent(self, name: str) -> list[int]:
        """SIGKILL to the worker's own process only (an OOM kill, a crash); returns its children then."""
        proc = self.procs.pop(name)
        family = descendants(proc.pid)
        proc.kill()
        proc.wait()
        return family

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def signal_all(self, name: str, sig: int) -> None:
        """Send `sig` to a process and its descendants (SIGSTOP/SIGCONT: a host frozen and thawed)."""
        for pid in [self.procs[name].pid, *descendants(self.procs[name].pid)]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def running(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                for pid in [proc.pid, *descendants(proc.pid)]:
                    try:
                        os.kill(pid, signal.SIGCONT)  # a worker left frozen would never stop
                    except ProcessLookupError:
                        pass
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo += children.get(child, [])
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_events(conn) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every event in the shared stream and in each enrolled host's own, oldest first."""
    import json

    from gpu_worker import protocol

    streams = [protocol.EVENTS_STREAM] + [
        protocol.host_events_stream(u.decode()) for u in conn.smembers(protocol.HOSTS_SET)
    ]
    entries = [entry for stream in streams for entry in conn.xrange(stream)]
    entries.sort(key=lambda e: tuple(int(x) for x in e[0].split(b"-")))
    return [json.loads(fields[b"data"]) for _id, fields in entries]


def _verify_key() -> str:
    from generations.dispatch.signing import verify_key_text

    return verify_key_text()


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
