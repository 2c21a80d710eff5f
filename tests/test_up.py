"""The README's run command: the whole workshop on embedded defaults, stopped by Ctrl-C."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import pytest

from tests import comfyui_real
from tests.live import ROOT, free_port

pytestmark = pytest.mark.e2e


def _up(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env.update(DEBUG="true", WORKSHOP_LOCAL_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"))
    return subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port), "--workers", "1", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], lines: list[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
        lines.append(proc.stdout.readline())  # type: ignore[union-attr]


def _log_in(url: str, output: str, username: str) -> httpx.Client:
    password = re.search(rf"{username}\s+(\S+)", output).group(1)  # type: ignore[union-attr]
    client = httpx.Client(base_url=url, follow_redirects=True, timeout=30)
    page = client.get("/accounts/login/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post(
        "/accounts/login/", data={"csrfmiddlewaretoken": token, "username": username, "password": password}
    )
    return client


def test_it_runs_the_demo_on_embedded_defaults_and_stops_cleanly(tmp_path) -> None:
    port = free_port()
    proc = _up(tmp_path, port, "--web", "2")
    lines: list[str] = []
    try:
        _read_until(proc, lines, "Workshop running", 60)
        _read_until(proc, lines, "web process(es)", 10)
        output = "".join(lines)
        assert "filmmaker1" in output and "private Redis" in output
        assert f"2 web process(es) on 127.0.0.1:{port}" in output
        assert httpx.get(f"http://127.0.0.1:{port}/accounts/login/").status_code == 200
        assert (tmp_path / "workshop.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and rest.rstrip().endswith("stopped"), rest[-2000:]


def test_it_runs_the_demo_on_a_real_comfyui(tmp_path) -> None:
    """`deploy/up.sh --comfyui`: the worker starts its own ComfyUI, and a filmmaker's model-free
    generation on the demo round ends as a playable take."""
    comfyui_real.require_installed()
    port = free_port()
    proc = _up(tmp_path, port, "--comfyui")
    lines: list[str] = []
    try:
        _read_until(proc, lines, "backend comfyui is ready", 120)
        client = _log_in(f"http://127.0.0.1:{port}", "".join(lines), "filmmaker1")
        form = client.get("/rounds/1/").text
        fields = dict(re.findall(r'name="([^"]+)"[^>]*value="([^"]*)"', form))
        fields.update(prompt="grain", frames="9", width="128", height="96")
        card = client.post("/rounds/1/generate", data=fields, headers={"HX-Request": "true"}).text
        generation = re.search(r'id="gen-(\d+)"', card).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 90
        while not (take := re.search(r"/takes/(\d+)/file", card)):
            assert time.monotonic() < deadline and "Failed" not in card, card
            time.sleep(0.3)
            card = client.get(f"/generations/{generation}/card").text
        with av.open(io.BytesIO(client.get(f"/takes/{take.group(1)}/file").content)) as video:
            stream = video.streams.video[0]
            assert (stream.width, stream.height, sum(1 for _ in video.decode(stream))) == (128, 96, 9)
        assert (tmp_path / "comfyui" / "gpu-1" / "comfyui.log").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and rest.rstrip().endswith("stopped"), rest[-2000:]
