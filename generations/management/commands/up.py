"""`manage.py up`: the whole workshop on this machine, for a demo or development.

Migrates, seeds the demo when the database is empty, then runs the web side (``--web N``
daphne processes behind one port: ``manage.py web``), the conductor and local GPU workers on
the synthetic backend (plus a private Redis when REDIS_URL is not set) until Ctrl-C, which
stops all of them in order. As in production, the private Redis has ACLs on: the web app and
the conductor have their own users, and each local worker is a GPU host enrolled for this run
with its own credential (revoked at exit). With ``--comfyui`` each worker drives a real
ComfyUI on the CPU instead (installed by ``deploy/bootstrap.py --comfyui``), which it starts
itself, and the demo round offers the model-free template.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from generations.authoring.demo import seed_demo
from generations.authoring.library import MODEL_FREE
from generations.broker import acl
from generations.fleet import localcomfy
from generations.fleet.hosts import host_enrol
from generations.models import GpuHost
from workshop.local_secret import local_secret_key

BASE = Path(settings.BASE_DIR)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def _answers(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/accounts/login/")
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


class Command(BaseCommand):
    help = "Run the whole workshop locally: web (daphne), conductor, GPU workers, and Redis if needed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("GPU_WORKER_COUNT", "2")))
        parser.add_argument(
            "--web",
            type=int,
            default=settings.WEB_PROCESSES,
            help="Web (daphne) processes behind the one port (manage.py web; WEB_PROCESSES)",
        )
        parser.add_argument(
            "--frame-delay",
            type=float,
            default=float(os.environ.get("SYNTHETIC_FRAME_DELAY", "0.15")),
            help="Seconds of simulated GPU time per synthetic frame",
        )
        parser.add_argument(
            "--autoscale",
            action="store_true",
            help="Let the local provider start and stop up to --workers GPU workers to follow the autoscaler",
        )
        parser.add_argument(
            "--comfyui",
            action="store_true",
            help="Workers drive a real ComfyUI each (on the CPU here) instead of the synthetic backend",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.enrolled: list[int] = []
        self.redis_urls: dict[str, str] = {}
        host, port = opts["host"], opts["port"]
        if _port_taken(host, port):
            raise CommandError(f"Port {port} on {host} is in use; stop what runs there or pass --port.")
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        if opts["comfyui"]:
            if opts["autoscale"]:
                raise CommandError("--autoscale starts synthetic workers only; use one of the two.")
            if not localcomfy.installed():
                raise CommandError("ComfyUI is not installed: run deploy/up.sh --comfyui, which installs it.")
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            env = self._environment(host, port)
            call_command("migrate", interactive=False, verbosity=0)
            call_command("load_templates")
            self._print_logins(MODEL_FREE.slug if opts["comfyui"] else None)
            web = ["manage.py", "web", "--host", host, "--port", str(port), "--processes", str(opts["web"])]
            self._start("web", [sys.executable, *web], self._as("web", env))
            self._start("conductor", [sys.executable, "manage.py", "conductor"], self._as("conductor", env))
            self._start_workers(opts, env)
            self._wait_for_port(host, port)
            self.stdout.write(
                self.style.SUCCESS(f"\nWorkshop running at http://{host}:{port}/  (Ctrl-C stops it)\n")
            )
            while not stopping:
                for name, proc in self.procs:
                    if proc.poll() is not None:
                        raise CommandError(f"{name} exited with code {proc.returncode}; stopping everything.")
                time.sleep(0.5)
        finally:
            self._stop_all()

    def _start_workers(self, opts: dict[str, Any], env: dict[str, str]) -> None:
        """Local GPU workers: a fixed number, or a local provider that follows the autoscaler."""
        worker = BASE / ".venv-worker" / "bin" / "gpu-worker"
        if not worker.exists():
            raise CommandError(f"{worker} is missing: run deploy/up.sh, which installs the GPU worker.")
        if opts["autoscale"]:
            credential = self._enrol("local-fleet")
            fleet_env = {
                **self._as("conductor", env),
                "WORKERS_MAX": str(opts["workers"]),
                "SYNTHETIC_FRAME_DELAY": str(opts["frame_delay"]),
                # What the provider hands the workers it starts: one host for all of them.
                "GPU_WORKER_REDIS_URL": credential["REDIS_URL"],
                "JOB_VERIFY_KEY": credential["JOB_VERIFY_KEY"],
            }
            command = [sys.executable, "manage.py", "local_fleet", "--max", str(opts["workers"])]
            self._start("local-provider", command, fleet_env)
            return
        for i in range(1, opts["workers"] + 1):
            backend = (
                self._comfyui_arguments(i)
                if opts["comfyui"]
                else ["--backend", "synthetic", "--synthetic-frame-delay", str(opts["frame_delay"])]
            )
            credential = self._enrol(f"local-gpu-{i}")
            name = credential["GPU_WORKER_NAME"]
            self._start(f"gpu-{i}", [str(worker), "run", "--name", name, *backend], {**env, **credential})

    def _comfyui_arguments(self, i: int) -> list[str]:
        """A ComfyUI of its own per worker, as on a GPU host: the worker starts it (and again if it
        dies) and reports "warming up" until it answers."""
        port = _free_port()
        home = Path(settings.LOCAL_DIR) / "comfyui" / f"gpu-{i}"
        command = localcomfy.command(port=port, home=home, database_url=f"sqlite:///{home / 'comfyui.db'}")
        self.stdout.write(f"gpu-{i}: ComfyUI at http://127.0.0.1:{port} (log {home / 'comfyui.log'})")
        return [
            "--backend",
            "comfyui",
            "--comfyui-url",
            f"http://127.0.0.1:{port}",
            "--comfyui-command",
            shlex.join(command),
            "--comfyui-log",
            str(home / "comfyui.log"),
        ]

    def _as(self, role: str, env: dict[str, str]) -> dict[str, str]:
        """The environment of the web app or the conductor: its own Redis user on the private Redis."""
        return {**env, "REDIS_URL": self.redis_urls[role]} if role in self.redis_urls else env

    def _enrol(self, name: str) -> dict[str, str]:
        """A GPU host for one local worker (or the local provider's workers), as an admin would add it."""
        admin = self.redis_urls.get("admin") or settings.REDIS_URL
        enrolment = host_enrol(
            name=f"{name}-{secrets.token_hex(3)}", kind=GpuHost.Kind.LOCAL, conn=redis.Redis.from_url(admin)
        )
        self.enrolled.append(enrolment.host.pk)
        return enrolment.environment

    def _environment(self, host: str, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("DEBUG", "true")  # a plain-HTTP local demo
        env.setdefault("PUBLIC_BASE_URL", f"http://{host}:{port}")
        env.setdefault("PYTHONUNBUFFERED", "1")
        if not env.get("SECRET_KEY"):
            # Signs the demo's sessions and upload URLs: random, made on the first start and kept
            # (mode 600) beside the demo's database, never a key anyone could read in the source.
            env["SECRET_KEY"] = local_secret_key(Path(settings.LOCAL_DIR))
        if not os.environ.get("REDIS_URL"):
            env["REDIS_URL"] = self._start_redis(env)
            # This process enrols the workers: the address it gives them is the private Redis.
            settings.REDIS_URL = self.redis_urls["web"]
        return env

    def _start_redis(self, env: dict[str, str]) -> str:
        binary = shutil.which("redis-server") or str(BASE / ".venv-worker" / "bin" / "redis-server")
        if not Path(binary).exists():
            raise CommandError(
                "No redis-server found: set REDIS_URL, or install redis-server (deploy/up.sh does)."
            )
        port = _free_port()
        data = Path(settings.LOCAL_DIR) / "redis"
        data.mkdir(parents=True, exist_ok=True)
        # ACLs on, as in production: an admin (this command), the web app's and the conductor's users.
        passwords = {role: secrets.token_hex(16) for role in ("admin", "web", "conductor")}
        users = [
            ["--user", "default", "off"],
            ["--user", "workshop-admin", "on", f">{passwords['admin']}", "~*", "&*", "+@all"],
            ["--user", "workshop-web", "on", f">{passwords['web']}", *acl.APP_RULES],
            ["--user", "workshop-conductor", "on", f">{passwords['conductor']}", *acl.APP_RULES],
        ]
        for role in passwords:
            user = f"workshop-{role}"
            self.redis_urls[role] = f"redis://{user}:{passwords[role]}@127.0.0.1:{port}/0"
        self._start(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(data),
                *(arg for user in users for arg in user),
            ],
            env,
        )
        url = self.redis_urls["web"]
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    self.stdout.write(f"private Redis with ACLs at 127.0.0.1:{port}")
                    return url
            time.sleep(0.05)
        raise CommandError("The private Redis did not start; see its output above.")

    def _wait_for_port(self, host: str, port: int) -> None:
        # The port listens before daphne runs (manage.py web binds it first): wait for an answer.
        for _ in range(300):
            if _answers(host, port):
                return
            if any(name == "web" and proc.poll() is not None for name, proc in self.procs):
                break
            time.sleep(0.1)
        raise CommandError("The web server did not start; see its output above.")

    def _print_logins(self, template_slug: str | None) -> None:
        path = Path(settings.LOCAL_DIR) / "demo-logins.txt"
        logins = seed_demo(template_slug=template_slug)
        if logins:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{x.role:<11} {x.username:<12} {x.password}\n" for x in logins))
            path.chmod(0o600)
        if path.exists():
            self.stdout.write("\nDemo logins (role, username, password):\n" + path.read_text())
        else:
            self.stdout.write("\nThe database had users already; log in with yours.\n")

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        # Own session: Ctrl-C reaches only us, and we stop the children in order.
        proc = subprocess.Popen(cmd, cwd=BASE, env=env, start_new_session=True)
        self.procs.append((name, proc))

    def _stop_all(self) -> None:
        # Reverse start order: workers, conductor, web, and Redis last, which they all need.
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in 15 s; killing it")
                    proc.kill()
                    proc.wait()
        if self.enrolled:
            # This run's hosts die with its private Redis: keep them from looking enrolled.
            GpuHost.objects.filter(pk__in=self.enrolled, revoked_at=None).update(revoked_at=timezone.now())
        if self.procs:
            self.stdout.write("stopped")
