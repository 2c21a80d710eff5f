from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_worker.backends import Backend, JobContext, JobError, get_backend

from .conftest import ROOT


def test_it_builds_the_synthetic_backend_by_name() -> None:
    backend = get_backend("synthetic", frame_delay=0.5)
    assert isinstance(backend, Backend)
    assert backend.name == "synthetic"
    assert backend.frame_delay == 0.5  # type: ignore[attr-defined]


def test_it_refuses_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="'nope'.*known: comfyui, synthetic"):
        get_backend("nope")


def test_it_passes_progress_through_the_context(tmp_path: Path) -> None:
    calls = []
    ctx = JobContext(workdir=tmp_path, on_progress=lambda *args: calls.append(args))
    ctx.progress(40.0, step=2, steps=5, message="Sampling")
    ctx.progress(50.0)
    assert calls == [(40.0, 2, 5, "Sampling"), (50.0, None, None, "")]


def test_it_tells_the_backend_about_cancel_and_deadline(tmp_path: Path) -> None:
    ctx = JobContext(workdir=tmp_path, is_cancelled=lambda: True, deadline=time.monotonic() - 1)
    assert ctx.cancelled() and ctx.expired()
    assert not JobContext(workdir=tmp_path).expired()


def test_it_keeps_what_a_job_error_says() -> None:
    error = JobError("The prompt is empty.", detail="params['prompt'] == ''", retriable=False)
    assert str(error) == "The prompt is empty."
    assert (error.message, error.detail, error.retriable) == (
        "The prompt is empty.",
        "params['prompt'] == ''",
        False,
    )
    assert JobError("Busy.").retriable is False


def test_it_imports_without_django_or_torch() -> None:
    # The web app imports these; torch must load only inside a render, Django never.
    names = ("cli", "jobs", "events", "upload", "previews", "comfy", "warmup", "doctor")
    names += ("backends.synthetic", "backends.comfyui", "workflows")
    modules = ", ".join(f"gpu_worker.{name}" for name in names)
    check = f"import sys, {modules}; print(sorted({{'django', 'torch'}} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
