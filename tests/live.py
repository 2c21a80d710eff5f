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
    """daphne, the conductor and GPU workers as subprocesses; logs go to files in `logs`."""

    def __init__(self, *, database: str, redis_url: str, media_root: Path, logs: Path) -> None:
        assert Path(WORKER_PYTHON).exists(), (
            f"the GPU worker's Python is missing: {WORKER_PYTHON} (run deploy/test.sh)"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "MEDIA_ROOT": str(media_root),
            "PUBLIC_BASE_URL": self.url,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        # Each in its own process group, so a kill takes a worker's work-horse too, as when a host dies.
        self.procs[name] = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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
        self._spawn(name, command)
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
        self._spawn(name, [sys.executable, "manage.py", "conductor", "--block-ms", "200"])

    def start_worker(
        self,
        name: str = "e2e-gpu-1",
        *,
        frame_delay: float = 0.0,
        backend: str = "synthetic",
        comfyui_url: str | None = None,
    ) -> None:
        """A GPU worker on the `video` queue (the one every template of the tests names): the
        synthetic backend, or `backend="comfyui"` driving the ComfyUI at `comfyui_url`."""
        options = ["--synthetic-frame-delay", str(frame_delay)]
        if backend == "comfyui":
            assert comfyui_url, "the comfyui backend needs comfyui_url"
            options = ["--comfyui-url", comfyui_url]
        self._spawn(
            name,
            [
                WORKER_PYTHON,
                "-m",
                "gpu_worker",
                "run",
                "--name",
                name,
                "--queues",
                "video",
                "--backend",
                backend,
                *options,
            ],
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


class PrivateRedis:
    """A redis-server of our own on a free port, by default without persistence: a restart loses its
    data. Never the shared one: a test restarts this one."""

    def __init__(self, folder: Path, *, persist: bool = False) -> None:
        self.folder = folder
        # With `persist` it saves its data on the way down and loads it back, like a Redis with RDB.
        self.persist = persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                "redis-server",
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
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import redis

        wait_for(
            lambda: _pings(redis.Redis(port=self.port, socket_timeout=0.5)), timeout=20, what="redis-server"
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop it (its data gone) and start it again on the same port."""
        self.stop()
        self.start()


def _pings(conn) -> bool:  # type: ignore[no-untyped-def]
    import redis

    try:
        return bool(conn.ping())
    except redis.RedisError:
        return False


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
