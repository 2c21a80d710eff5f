"""The RQ job function the web app enqueues by dotted path (``protocol.JOB_FUNCTION``)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from gpu_worker import host, protocol
from gpu_worker.backends import Backend, JobCancelled, JobContext, JobError, JobSpec, get_backend
from gpu_worker.events import EventEmitter
from gpu_worker.previews import PreviewForwarder
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
    # Shared with the worker's heartbeat (a gpu_worker.horse.Phase): "delivering" while an upload waits.
    phase: Any = None


_config: WorkerConfig | None = None


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def backend_options(
    name: str,
    *,
    synthetic_frame_delay: float = 0.0,
    comfyui_url: str | None = None,
    worker_name: str | None = None,
) -> dict[str, Any]:
    if name == "synthetic":
        return {"frame_delay": synthetic_frame_delay}
    if name == "comfyui":
        from gpu_worker.comfy import DEFAULT_URL

        # One ComfyUI client id per worker: ComfyUI routes a prompt's messages by it.
        client_id = f"workshop-{worker_name or default_worker_name()}"
        return {"url": comfyui_url or DEFAULT_URL, "client_id": client_id}
    return {}


def config_from_env() -> WorkerConfig:
    """The configuration a plain ``rq worker`` gets, from the same variables as the CLI."""
    backend_name = os.environ.get("GPU_WORKER_BACKEND", DEFAULT_BACKEND)
    delay = float(os.environ.get("SYNTHETIC_FRAME_DELAY", "0") or 0)
    # RQ names its work-horse's worker in RQ_WORKER_ID; the pid alone would change per job.
    worker_name = os.environ.get("GPU_WORKER_NAME") or os.environ.get("RQ_WORKER_ID") or default_worker_name()
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    credential = host.credential_from_url(redis_url)
    worker_name = host.worker_name(worker_name, credential)
    options = backend_options(
        backend_name,
        synthetic_frame_delay=delay,
        comfyui_url=os.environ.get("COMFYUI_URL"),
        worker_name=worker_name,
    )
    return WorkerConfig(
        redis_url=redis_url,
        backend=get_backend(backend_name, **options),
        worker_name=worker_name,
        events_stream=host.events_stream(os.environ.get("EVENTS_STREAM", protocol.EVENTS_STREAM), credential),
        upload_options=upload_options(credential),
    )


def upload_options(credential: host.Credential | None) -> dict[str, Any]:
    return {"auth": (credential.username, credential.secret)} if credential else {}


def configure(config: WorkerConfig | None) -> None:
    """Set this process's worker config; RQ's forked work-horses inherit it. None resets it."""
    global _config
    _config = config


def current_config() -> WorkerConfig:
    global _config
    if _config is None:
        _config = config_from_env()
    return _config


class CancelWatch:
    """Whether the web app cancelled this attempt: its Redis key, read at most every ``interval``.

    Once seen, a cancel stays seen. A Redis error reads as "not cancelled": the cancel is
    noticed on a later poll, and a render is not failed over an advisory check."""

    def __init__(
        self,
        redis: Redis,
        generation_id: int,
        attempt: int,
        *,
        interval: float = protocol.CANCEL_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis, self.key = redis, protocol.cancel_key(generation_id, attempt)
        self.interval, self.clock = interval, clock
        self._checked = float("-inf")
        self._cancelled = False

    def __call__(self) -> bool:
        now = self.clock()
        if self._cancelled or now - self._checked < self.interval:
            return self._cancelled
        self._checked = now
        try:
            self._cancelled = bool(self.redis.exists(self.key))
        except RedisError:
            log.warning("could not read the cancel flag %s", self.key)
        return self._cancelled


def run_generation(
    *,
    generation_id: int,
    attempt: int,
    template: str,
    workflow: dict[str, Any],
    params: dict[str, Any],
    upload_url: str,
    timeout: int | None = None,
    job_signature: str = "",
) -> dict[str, Any]:
    """Run one generation attempt: started, progress (and previews)..., then succeeded, failed
    or cancelled.

    A ``JobError`` is an expected failure: it is reported and the RQ job ends normally; so is a
    cancel (the backend stops, nothing is uploaded). ``timeout`` (seconds) is the template's limit:
    past it the backend stops and the attempt fails as retriable. Anything else is reported as an
    internal error and re-raised so RQ records it too. ``job_signature`` was checked by the worker
    before it forked this job (``gpu_worker.guard``).
    """
    config = current_config()
    # A connection per job: the work-horse is a fresh fork and must not share the parent's sockets.
    redis = Redis.from_url(config.redis_url)
    events = EventEmitter(redis, stream=config.events_stream, worker=config.worker_name)
    job = JobSpec(generation_id, attempt, template, workflow, params)
    label = f"generation {generation_id} attempt {attempt} ({template})"
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"gpu-worker-g{generation_id}-a{attempt}-"))
    cancelled = CancelWatch(redis, generation_id, attempt)
    try:
        if cancelled():
            return _report_cancelled(events, job, label, "before it started")
        log.info("%s: started on %s", label, config.backend.name)
        events.started(generation_id, attempt)
        ctx = JobContext(
            workdir=workdir,
            on_progress=lambda percent, step, steps, message: events.progress(
                generation_id, attempt, percent, step, steps, message
            ),
            on_preview=PreviewForwarder(
                lambda image, content_type, width, height: events.preview(
                    generation_id, attempt, image, content_type, width, height
                )
            ),
            is_cancelled=cancelled,
            timeout=timeout,
            deadline=started + timeout if timeout else None,
        )
        try:
            outputs = config.backend.run(job, ctx)
        except JobError:
            # A cancel often surfaces as a failure on the way out (an interrupted node...).
            if cancelled():
                raise JobCancelled() from None
            raise
        if not outputs:
            raise JobError(
                "The workflow produced no output.", f"backend {config.backend.name} returned no outputs"
            )
        ctx.progress(UPLOADING_PERCENT, message="Uploading the result")
        for output in outputs:
            if cancelled():
                raise JobCancelled()
            upload_file(
                upload_url,
                output.path,
                output.filename,
                output.content_type,
                config.worker_name,
                should_stop=cancelled,
                on_retry=lambda problem: _delivering(config),
                **config.upload_options,
            )
        filenames = [output.filename for output in outputs]
        events.succeeded(generation_id, attempt, filenames)
        if config.phase is not None:
            # The heartbeat keeps saying so: a success whose event Redis loses is not rendered again.
            config.phase.delivered(True)
        log.info("%s: succeeded in %.1fs: %s", label, time.monotonic() - started, ", ".join(filenames))
        return {"status": "succeeded", "outputs": filenames}
    except JobCancelled:
        return _report_cancelled(events, job, label, f"after {time.monotonic() - started:.1f}s")
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


def _delivering(config: WorkerConfig) -> None:
    # The render is done and kept; the heartbeat says so while the web app is away.
    if config.phase is not None:
        config.phase.set(protocol.DELIVERING)


def _report_cancelled(events: EventEmitter, job: JobSpec, label: str, when: str) -> dict[str, Any]:
    log.info("%s: cancelled %s", label, when)
    events.cancelled(job.generation_id, job.attempt)
    return {"status": "cancelled"}


def _is_timeout(exc: BaseException) -> bool:
    from rq.timeouts import JobTimeoutException

    return isinstance(exc, JobTimeoutException)
