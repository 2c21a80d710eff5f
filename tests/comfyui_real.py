"""A real ComfyUI server for the tests: the one at COMFYUI_URL, or one started from .comfyui/.

`deploy/test.sh` installs ComfyUI 0.3.75 (`deploy/bootstrap.py --comfyui`), so CI always runs the
real-server tests; elsewhere they skip unless COMFYUI_URL names a server. A started server runs on
the CPU with a base directory of its own, an in-memory database, and two extra node packs that need
no weights: ComfyUI's own `custom_nodes/websocket_image_save.py` (previews streamed as binary frames)
and its test suite's `testing-pack` (TestSleep: a node that takes time, reports progress and stops
at an interrupt).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from generations.fleet import localcomfy
from generations.fleet.localcomfy import SOURCE, installed
from gpu_worker.measure import with_sleep  # noqa: F401  (the tests' name for it)
from tests.live import free_port

TEST_NODES = SOURCE / "tests" / "execution" / "testing_nodes" / "testing-pack"
WS_SAVE_NODE = SOURCE / "custom_nodes" / "websocket_image_save.py"


def require_installed() -> None:
    """Skip the calling test without a ComfyUI in .comfyui/; fail in CI, which installs one."""
    if installed():
        return
    import pytest

    message = "no real ComfyUI: run deploy/test.sh (it installs one) or set COMFYUI_URL"
    if os.environ.get("CI"):
        pytest.fail(message)  # a skip there would hide a broken install
    pytest.skip(message)


def require_nodes(url: str, *classes: str) -> None:
    """Skip the calling test when the server lacks a node class it needs: a server named by
    COMFYUI_URL may not load ComfyUI's test nodes."""
    import pytest

    missing = [c for c in classes if httpx.get(f"{url}/object_info/{c}", timeout=30).json().get(c) is None]
    if missing:
        pytest.skip(f"the ComfyUI at {url} lacks {', '.join(missing)}")


class RealComfyUI:
    """One ComfyUI process; ``start`` returns once ``/system_stats`` answers."""

    def __init__(self, base: Path, *, extra_args: tuple[str, ...] = ()) -> None:
        self.base, self.extra_args = base, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base / "comfyui.log"

    def command(self) -> list[str]:
        database = "sqlite:///:memory:"  # nothing to keep, and no clash between servers
        return [*localcomfy.command(port=self.port, home=self.base, database_url=database), *self.extra_args]

    def start(self, timeout: float = 120.0) -> RealComfyUI:
        command = self.command()  # makes custom_nodes/
        for source in (TEST_NODES, WS_SAVE_NODE):
            link = self.base / "custom_nodes" / source.name
            if not link.exists():
                link.symlink_to(source)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            command, cwd=SOURCE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/system_stats", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole process group, as when the server crashes."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
