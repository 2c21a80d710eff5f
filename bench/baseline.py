#!/usr/bin/env python
"""The generation path without signing, verification and ACLs, for bench/pipeline.py's comparison.

Runs one process of the baseline stack with the tenant checks taken out: ``daphne ...`` (no body
gate, uploads without a host credential), ``conductor ...`` (jobs unsigned) or ``gpu_worker ...``
(jobs run unverified, on Redis's default user). Benchmark only: it patches the code at start and
never ships a switch to turn these checks off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    role, args = sys.argv[1], sys.argv[2:]
    if role == "gpu_worker":
        from gpu_worker import guard, warmup
        from gpu_worker.cli import main as worker_main

        guard.GuardedWorker.execute_job = warmup.GatedWorker.execute_job  # type: ignore[method-assign]
        sys.exit(worker_main(args))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workshop.settings")
    import django

    django.setup()
    if role == "daphne":
        from daphne.cli import CommandLineInterface

        from generations.dispatch import views
        from workshop import bodygate

        bodygate.install = lambda: None
        views._host = lambda request: None  # type: ignore[assignment]
        sys.argv = ["daphne", *args]
        CommandLineInterface.entrypoint()
    elif role == "conductor":
        from django.core.management import execute_from_command_line

        from generations.dispatch import attempts

        attempts.job_sign = lambda **kwargs: ""  # type: ignore[assignment]
        execute_from_command_line(["manage.py", "conductor", *args])
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
