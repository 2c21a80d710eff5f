"""The worker runs one function, signed by the conductor, and nothing else.

RQ imports and calls whatever dotted path a job names, and runs the callbacks, webhooks, retries
and dependents a job hash asks for; any host holding a Redis credential can write job hashes (RQ's
workers must). So before a job is forked, the worker reads it as data only (the JSON serializer
imports nothing) and refuses it unless it calls ``protocol.JOB_FUNCTION`` with keyword arguments
alone, asks for no callback, webhook, retry or repeat, and carries a current signature of exactly
these arguments (``signing``). A refused job is failed in RQ without any of RQ's follow-ups and
reported as a ``refused`` event; a job hash that cannot even be read is failed the same way instead
of stopping the worker (RQ's loop quits on any error while dequeuing).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from rq.job import Job

from gpu_worker import protocol, signing
from gpu_worker.heartbeat import parse_job_id
from gpu_worker.warmup import GatedWorker

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gpu_worker.events import EventEmitter

log = logging.getLogger(__name__)

FAILED_TTL_S = 24 * 3600
REASON_MAX = 300


class JobRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:REASON_MAX]


def check(job: Job, key: Ed25519PublicKey | None, *, now: float | None = None) -> None:
    """Raise ``JobRefused`` unless ``job`` is a signed call of the generation job and nothing more."""
    try:
        function, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except Exception:
        raise JobRefused("its data is not a JSON job") from None
    if function != protocol.JOB_FUNCTION:
        raise JobRefused(f"it calls {str(function)[:120]!r}, not {protocol.JOB_FUNCTION}")
    if instance is not None or args or not isinstance(kwargs, dict):
        raise JobRefused("it passes positional arguments")
    follow_ups = (
        job._success_callback_name,
        job._failure_callback_name,
        job._stopped_callback_name,
        job.webhooks,
        job.retries_left,
        job.repeats_left,
        job._dependency_ids,
    )
    if any(follow_ups):
        raise JobRefused("it asks RQ for callbacks, webhooks, retries, repeats or dependencies")
    if key is None:
        raise JobRefused("this worker has no JOB_VERIFY_KEY to check signatures with")
    try:
        signing.verify(key, job_id=job.id, function=function, kwargs=kwargs, now=now)
    except signing.BadSignature as exc:
        raise JobRefused(str(exc)) from None


class GuardedWorker(GatedWorker):
    """A ``GatedWorker`` that runs only jobs that pass ``check``."""

    verify_key: Ed25519PublicKey | None = None
    events: EventEmitter | None = None
    refused: int = 0

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            check(job, self.verify_key)
        except JobRefused as exc:
            self.refuse(job.id, queue, exc.reason)
            return
        super().execute_job(job, queue)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Exception as exc:
                # RQ tags an error while fetching a popped job with its id and queue.
                job_id, queue = getattr(exc, "job_id", None), getattr(exc, "queue", None)
                if job_id is None or queue is None:
                    raise
                self.refuse(str(job_id), queue, f"its job hash is unreadable ({type(exc).__name__})")

    def refuse(self, job_id: str, queue: Any, reason: str) -> None:
        """Fail the job in RQ as data: no callbacks, webhooks, retries or dependents; then report it."""
        self.refused += 1
        log.warning("refused job %s from %s: %s", job_id[:120], queue.name, reason)
        try:
            with self.connection.pipeline() as pipe:
                pipe.lrem(queue.intermediate_queue_key, 1, job_id)
                pipe.hset(Job.key_for(job_id), mapping={"status": "failed", "worker_name": self.name})
                pipe.zadd(queue.failed_job_registry.key, {job_id: time.time() + FAILED_TTL_S})
                pipe.execute()
        except Exception:
            log.warning("could not mark refused job %s as failed", job_id[:120], exc_info=True)
        if self.events is not None:
            generation_id, attempt = parse_job_id(job_id)
            ids = [int(x) if x.isdigit() else 0 for x in (generation_id, attempt)]
            self.events.refused(job_id, reason, *ids)
