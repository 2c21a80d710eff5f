"""`gpu-worker doctor --allow-cpu` against a real ComfyUI (see tests/comfyui_real.py), in the worker venv."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import httpx
import pytest

from .conftest import ROOT

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer

LTX2 = ROOT / "generations" / "workflows" / "ltx2_text_to_video.json"
SHIPPED_VERSION = "0.3.75"  # what deploy/bootstrap.py installs and tests/comfyui_real.py starts


def doctor(
    url: str, redis_url: str, python: str, env: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    argv = [python, "-m", "gpu_worker", "doctor", "--redis-url", redis_url, "--comfyui-url", url]
    return subprocess.run(
        [*argv, "--allow-cpu", *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def healthy(
    real_comfyui: str,
    redis_url: str,
    http_server: UploadServer,
    worker_python: str,
    worker_env: dict[str, str],
) -> list[str]:
    http_server.reset()
    proc = doctor(real_comfyui, redis_url, worker_python, worker_env, "--upload-url", http_server.url())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def test_it_passes_a_cpu_host_with_a_real_comfyui(healthy: list[str], real_comfyui: str) -> None:
    version = httpx.get(f"{real_comfyui}/system_stats", timeout=10).json()["system"]["comfyui_version"]
    assert version == SHIPPED_VERSION or os.environ.get("COMFYUI_URL")  # a server of the user's own
    assert healthy[2].startswith(f"ok       ComfyUI: {version} at {real_comfyui}; devices: ")
    assert "warning  ComfyUI: ComfyUI runs on the CPU only (allowed by --allow-cpu)" in healthy
    assert "ok       node classes: all 4 classes of model_free_video.json are installed" in healthy
    assert healthy[-2].startswith("ok       upload: the web app at 127.0.0.1:")
    assert healthy[-1] == "all checks passed"


def test_it_names_the_ltx2_node_classes_the_real_comfyui_lacks(
    real_comfyui: str, redis_url: str, worker_python: str, worker_env: dict[str, str]
) -> None:
    proc = doctor(real_comfyui, redis_url, worker_python, worker_env, "--workflow", str(LTX2))
    [missing] = [line for line in proc.stdout.splitlines() if "lacks" in line]
    assert missing.startswith("PROBLEM  node classes: ComfyUI lacks LTXAVTextEncoderLoader, ")
    assert "LTXVEmptyLatentAudio" in missing and "needed by ltx2_text_to_video.json" in missing
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1] == "1 problem(s)"
