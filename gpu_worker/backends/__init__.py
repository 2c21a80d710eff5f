"""What a backend is: the piece that turns one job into output files.

The synthetic backend renders with torch; the ComfyUI backend submits ``JobSpec.workflow``
to a ComfyUI server and reports its progress, previews and outputs through the same ``JobContext``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

ProgressCallback = Callable[[float, "int | None", "int | None", str], object]
PreviewCallback = Callable[[bytes, str], object]


class JobError(Exception):
    """A failure the user can be told about: ``message`` is shown to them, ``detail`` to admins."""

    def __init__(self, message: str, detail: str = "", retriable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.retriable = retriable


class JobCancelled(Exception):
    """The attempt was stopped because the web app asked for it: nothing is uploaded."""


class BackendUnavailable(Exception):
    """The backend cannot take jobs right now (ComfyUI is starting or down); wait and ask again."""


def timeout_error(limit: float | None, detail: str = "") -> JobError:
    limit_text = f" ({limit:g} s)" if limit else ""
    return JobError(
        f"The generation took longer than its time limit{limit_text} and was stopped; you can retry.",
        detail or f"job timeout of {limit} s exceeded",
        retriable=True,
    )


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
    """What a backend may use while it runs: a private working directory, progress and preview
    sinks, whether the web app cancelled the attempt, and the attempt's deadline.

    Backends call ``cancelled()`` and ``expired()`` often (they are cheap: the Redis poll behind
    ``cancelled`` is rate-limited by the job) and stop with ``JobCancelled`` / ``timeout_error``."""

    workdir: Path
    on_progress: ProgressCallback = field(default=lambda percent, step, steps, message: None)
    on_preview: PreviewCallback = field(default=lambda image, content_type: None)
    is_cancelled: Callable[[], bool] = field(default=lambda: False)
    timeout: float | None = None
    deadline: float | None = None  # time.monotonic() value; None: no limit

    def progress(
        self, percent: float, step: int | None = None, steps: int | None = None, message: str = ""
    ) -> None:
        self.on_progress(percent, step, steps, message)

    def preview(self, image: bytes, content_type: str) -> None:
        """A preview image (PNG or JPEG bytes) of the work in progress; the job shrinks and throttles it."""
        self.on_preview(image, content_type)

    def cancelled(self) -> bool:
        return self.is_cancelled()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@runtime_checkable
class Backend(Protocol):
    name: str

    def check(self) -> None:
        """Raise if this backend cannot run jobs here: ``BackendUnavailable`` when waiting may help
        (ComfyUI still starting), anything else for a broken installation."""

    def run(self, job: JobSpec, ctx: JobContext) -> list[Output]:
        """Produce the outputs in ``ctx.workdir``; raise ``JobError`` for failures users should see."""


# Imported lazily so that choosing one backend never imports another's heavy dependencies.
_BACKENDS = {
    "synthetic": "gpu_worker.backends.synthetic:SyntheticBackend",
    "comfyui": "gpu_worker.backends.comfyui:ComfyUIBackend",
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
