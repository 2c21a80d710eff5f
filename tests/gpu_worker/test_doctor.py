"""`gpu-worker doctor` against the fake ComfyUI: once in the worker venv (torch there), and in-process."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gpu_worker.doctor import run_doctor, workflow_classes

from .conftest import ROOT
from .fake_comfyui import FIXTURES, FakeComfyUI, load_trace

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer

LTX2 = FIXTURES / "templates" / "ltx2_text_to_video.json"


@pytest.fixture(scope="module")
def healthy(
    redis_url: str, http_server: UploadServer, worker_python: str, worker_env: dict[str, str]
) -> list[str]:
    """`gpu-worker doctor --allow-cpu` on this (CPU) host with ComfyUI, Redis and the web app up."""
    fake = FakeComfyUI().start()
    http_server.reset()
    argv = [worker_python, "-m", "gpu_worker", "doctor", "--redis-url", redis_url, "--comfyui-url", fake.url]
    try:
        proc = subprocess.run(
            [*argv, "--allow-cpu", "--upload-url", http_server.url()],
            cwd=ROOT,
            env=worker_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        fake.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def doctor(capsys: pytest.CaptureFixture[str], **options: object) -> tuple[int, list[str]]:
    defaults = {"redis_url": "redis://127.0.0.1:1/0", "comfyui_url": "http://127.0.0.1:1", "workflow": []}
    code = run_doctor(argparse.Namespace(**{**defaults, "upload_url": None, "allow_cpu": False, **options}))
    return code, capsys.readouterr().out.splitlines()


def test_it_passes_a_healthy_host_with_cpu_allowed(healthy: list[str]) -> None:
    assert healthy[0].startswith("warning  GPU: torch ") and healthy[0].endswith("(allowed by --allow-cpu)")
    assert healthy[1].startswith("ok       Redis: redis://")
    assert healthy[2].startswith("ok       ComfyUI: 0.3.64 at http://127.0.0.1:")
    assert "ok       node classes: all 4 classes of model_free_video.json are installed" in healthy
    assert healthy[-2].startswith("ok       upload: the web app at 127.0.0.1:")
    assert healthy[-1] == "all checks passed"


def test_it_names_the_node_classes_comfyui_lacks(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = doctor(capsys, comfyui_url=comfy.url, workflow=[LTX2], allow_cpu=True)
    [missing] = [line for line in lines if "lacks" in line]
    assert missing.startswith(
        "PROBLEM  node classes: ComfyUI lacks LTXAVTextEncoderLoader, LTXVAudioVAEDecode, "
    )
    assert missing.endswith(
        "needed by ltx2_text_to_video.json: install the custom nodes (or the newer ComfyUI) "
        "that provide them, then restart ComfyUI"
    )
    assert code == 1


def test_it_says_what_to_do_when_everything_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = doctor(capsys)
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1 and lines[-1] == f"{len(problems)} problem(s)"
    assert any(p.startswith("PROBLEM  Redis: redis://127.0.0.1:1/0 is not reachable") for p in problems)
    assert problems[-1].startswith("PROBLEM  ComfyUI: http://127.0.0.1:1 is not answering")
    assert problems[-1].endswith("start ComfyUI, or set COMFYUI_URL / --comfyui-url")


def test_it_reports_comfyui_on_the_cpu_as_a_problem(
    comfy: FakeComfyUI, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines = doctor(capsys, comfyui_url=comfy.url)
    cpu = "PROBLEM  ComfyUI: ComfyUI runs on the CPU only: start it without --cpu on a host whose GPU"
    assert f"{cpu} torch can see" in lines


def test_it_reads_node_classes_from_both_workflow_formats(tmp_path: Path) -> None:
    api = load_trace("05_video_mp4")["workflow"]
    assert workflow_classes(api) == {"EmptyImage", "ImageAddNoise", "CreateVideo", "SaveVideo"}
    ui = workflow_classes(json.loads(LTX2.read_text()))
    assert {"SaveVideo", "LTXVConditioning"} <= ui and not {"MarkdownNote", "Reroute"} & ui
