from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from generations.broker.connection import connection
from generations.fleet.localfleet import LocalFleet


class Command(BaseCommand):
    help = "The local provider: start and stop gpu-worker processes here to follow the autoscaler."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--queue", default="video")
        parser.add_argument("--max", type=int, default=settings.WORKERS_MAX)
        parser.add_argument(
            "--frame-delay", type=float, default=float(os.environ.get("SYNTHETIC_FRAME_DELAY", "0"))
        )
        parser.add_argument("--interval", type=float, default=1.0)

    def handle(self, *args: Any, **opts: Any) -> None:
        worker = Path(settings.BASE_DIR) / ".venv-worker" / "bin" / "python"
        python = str(worker) if worker.exists() else sys.executable
        command = [
            python,
            "-m",
            "gpu_worker",
            "run",
            "--queues",
            opts["queue"],
            "--backend",
            "synthetic",
            "--synthetic-frame-delay",
            str(opts["frame_delay"]),
        ]
        if os.environ.get("GPU_WORKER_REDIS_URL"):
            # The credential of the GPU host enrolled for these workers (manage.py up --autoscale).
            command += ["--redis-url", os.environ["GPU_WORKER_REDIS_URL"]]
        env = {**os.environ, "PYTHONPATH": str(settings.BASE_DIR)}
        local = LocalFleet(
            command, env, queue=opts["queue"], max_workers=opts["max"], cwd=str(settings.BASE_DIR)
        )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"local provider following the target of queue {opts['queue']} (max {opts['max']})")
        try:
            while not stop.is_set():
                local.step(connection())
                stop.wait(opts["interval"])
        finally:
            local.stop_all()
