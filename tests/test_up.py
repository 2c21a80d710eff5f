"""The README's run command: the whole workshop on embedded defaults, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.live import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_it_runs_the_demo_on_embedded_defaults_and_stops_cleanly(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env.update(DEBUG="true", WORKSHOP_LOCAL_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("Workshop running" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        output = "".join(lines)
        assert "filmmaker1" in output and "private Redis" in output
        assert httpx.get(f"http://127.0.0.1:{port}/accounts/login/").status_code == 200
        assert (tmp_path / "workshop.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and rest.rstrip().endswith("stopped"), rest[-2000:]
