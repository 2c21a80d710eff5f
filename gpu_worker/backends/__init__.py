"""What a backend is: the piece that turns one job into output files.

The synthetic backend renders with torch; a ComfyUI backend will submit ``JobSpec.workflow``
to a ComfyUI server and report its progress through the same ``JobContext``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

ProgressCallback = Callable[[float, "int | None", "int | None", str], object]


class JobError(Exception):
    """A failure the user can be told about: ``message`` is shown to them, ``detail`` to admins."""

    def __init__(self, message: str, detail: str = "", retriable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.retriable = retriable


@dataclass(frozen=True)
class JobSpec:
    generation_id: int
    attempt: int
    template: str
    workflow: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True)
class Output:
    path: Path
    filename: str
    content_type: str


@dataclass
class JobContext:
    """What a backend may use while it runs: a private working directory and a progress sink."""

    workdir: Path
    on_progress: ProgressCallback = field(default=lambda percent, step, steps, message: None)

    def progress(
        self, percent: float, step: int | None = None, steps: int | None = None, message: str = ""
    ) -> None:
        self.on_progress(percent, step, steps, message)


@runtime_checkable
class Backend(Protocol):
    name: str

    def check(self) -> None:
        """Raise if this backend cannot run jobs here (missing library, server down...)."""

    def run(self, job: JobSpec, ctx: JobContext) -> list[Output]:
        """Produce the outputs in ``ctx.workdir``; raise ``JobError`` for failures users should see."""


# Imported lazily so that choosing one backend never imports another's heavy dependencies.
_BACKENDS = {
    "synthetic": "gpu_worker.backends.synthetic:SyntheticBackend",
}


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str, **options: Any) -> Backend:
    try:
        target = _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"Unknown GPU worker backend {name!r}; known: {', '.join(backend_names())}"
        ) from None
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(**options)
    return backend
