"""The RQ job function the web app enqueues by dotted path (``protocol.JOB_FUNCTION``)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from gpu_worker import protocol
from gpu_worker.backends import Backend, JobContext, JobError, JobSpec, get_backend
from gpu_worker.events import EventEmitter
from gpu_worker.upload import upload_file

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_BACKEND = "synthetic"
INTERNAL_ERROR = "The GPU worker hit an internal error; you can retry."
TIMEOUT_ERROR = "The generation took longer than its time limit and was stopped; you can retry."
UPLOADING_PERCENT = 97.0


@dataclass(frozen=True)
class WorkerConfig:
    redis_url: str
    backend: Backend
    worker_name: str
    events_stream: str = protocol.EVENTS_STREAM
    upload_options: dict[str, Any] = field(default_factory=dict)


_config: WorkerConfig | None = None


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def backend_options(name: str, *, synthetic_frame_delay: float = 0.0) -> dict[str, Any]:
    return {"frame_delay": synthetic_frame_delay} if name == "synthetic" else {}


def config_from_env() -> WorkerConfig:
    """The configuration a plain ``rq worker`` gets, from the same variables as the CLI."""
    backend_name = os.environ.get("GPU_WORKER_BACKEND", DEFAULT_BACKEND)
    delay = float(os.environ.get("SYNTHETIC_FRAME_DELAY", "0") or 0)
    return WorkerConfig(
        redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        backend=get_backend(backend_name, **backend_options(backend_name, synthetic_frame_delay=delay)),
        # RQ names its work-horse's worker in RQ_WORKER_ID; the pid alone would change per job.
        worker_name=os.environ.get("GPU_WORKER_NAME")
        or os.environ.get("RQ_WORKER_ID")
        or default_worker_name(),
        events_stream=os.environ.get("EVENTS_STREAM", protocol.EVENTS_STREAM),
    )


def configure(config: WorkerConfig | None) -> None:
    """Set this process's worker config; RQ's forked work-horses inherit it. None resets it."""
    global _config
    _config = config


def current_config() -> WorkerConfig:
    global _config
    if _config is None:
        _config = config_from_env()
    return _config


def run_generation(
    *,
    generation_id: int,
    attempt: int,
    template: str,
    workflow: dict[str, Any],
    params: dict[str, Any],
    upload_url: str,
    timeout: int | None = None,
) -> dict[str, Any]:
    """Run one generation attempt: started, progress..., then succeeded or failed.

    A ``JobError`` is an expected failure: it is reported and the RQ job ends normally.
    Anything else is reported as an internal error and re-raised so RQ records it too.
    """
    config = current_config()
    # A connection per job: the work-horse is a fresh fork and must not share the parent's sockets.
    redis = Redis.from_url(config.redis_url)
    events = EventEmitter(redis, stream=config.events_stream, worker=config.worker_name)
    job = JobSpec(generation_id, attempt, template, workflow, params)
    label = f"generation {generation_id} attempt {attempt} ({template})"
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"gpu-worker-g{generation_id}-a{attempt}-"))
    try:
        log.info("%s: started on %s", label, config.backend.name)
        events.started(generation_id, attempt)
        ctx = JobContext(
            workdir=workdir,
            on_progress=lambda percent, step, steps, message: events.progress(
                generation_id, attempt, percent, step, steps, message
            ),
        )
        outputs = config.backend.run(job, ctx)
        if not outputs:
            raise JobError(
                "The workflow produced no output.", f"backend {config.backend.name} returned no outputs"
            )
        ctx.progress(UPLOADING_PERCENT, message="Uploading the result")
        for output in outputs:
            upload_file(
                upload_url,
                output.path,
                output.filename,
                output.content_type,
                config.worker_name,
                **config.upload_options,
            )
        filenames = [output.filename for output in outputs]
        events.succeeded(generation_id, attempt, filenames)
        log.info("%s: succeeded in %.1fs: %s", label, time.monotonic() - started, ", ".join(filenames))
        return {"status": "succeeded", "outputs": filenames}
    except JobError as exc:
        log.info("%s: failed in %.1fs: %s", label, time.monotonic() - started, exc.message)
        events.failed(generation_id, attempt, exc.message, exc.detail, exc.retriable)
        return {"status": "failed", "message": exc.message, "retriable": exc.retriable}
    except Exception as exc:
        log.exception("%s: internal error after %.1fs", label, time.monotonic() - started)
        message = TIMEOUT_ERROR if _is_timeout(exc) else INTERNAL_ERROR
        try:
            events.failed(generation_id, attempt, message, traceback.format_exc(), retriable=True)
        except Exception:
            # Keep the original error for RQ; the web app's reconciler notices the failed job.
            log.exception("%s: could not report the failure", label)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        redis.close()


def _is_timeout(exc: BaseException) -> bool:
    from rq.timeouts import JobTimeoutException

    return isinstance(exc, JobTimeoutException)
