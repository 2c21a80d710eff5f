"""A ComfyUI on this machine (CPU): the one `deploy/bootstrap.py --comfyui` installs into
`.comfyui/` and `.venv-comfyui`, for `manage.py up --comfyui` and the tests. GPU hosts install
ComfyUI their own way (docs/deploy.md). Plain Python, no Django: the benchmarks use it too."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(os.environ.get("COMFYUI_SOURCE", ROOT / ".comfyui"))
PYTHON = Path(os.environ.get("COMFYUI_PYTHON", ROOT / ".venv-comfyui" / "bin" / "python"))


def installed() -> bool:
    return (SOURCE / "main.py").exists() and PYTHON.exists()


def command(*, port: int, home: Path, database_url: str) -> list[str]:
    """The command line of a ComfyUI on the CPU, listening on loopback, keeping its models, custom
    nodes, inputs and outputs under ``home`` (created with the custom_nodes/ folder that ComfyUI
    0.3.75 needs to start)."""
    (home / "custom_nodes").mkdir(parents=True, exist_ok=True)
    return [
        str(PYTHON),
        str(SOURCE / "main.py"),
        "--cpu",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--base-directory",
        str(home),
        "--database-url",
        database_url,
        "--disable-auto-launch",
    ]
