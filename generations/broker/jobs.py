"""RQ's side of a generation: the queues, and the job of each attempt (JSON only, never pickle)."""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now

from gpu_worker import protocol

from .connection import connection


def queue(name: str, conn: redis.Redis | None = None) -> Queue:
    return Queue(name, connection=conn or connection(), serializer=JSONSerializer)


def job_status(generation_id: int, attempt: int, conn: redis.Redis | None = None) -> JobStatus | None:
    """RQ's status of an attempt's job, or None when RQ no longer knows it (lost or flushed)."""
    try:
        job = Job.fetch(
            protocol.job_id(generation_id, attempt),
            connection=conn or connection(),
            serializer=JSONSerializer,
        )
    except NoSuchJobError:
        return None
    return job.get_status(refresh=False)


def remove_job(queue_name: str, generation_id: int, attempt: int, conn: redis.Redis | None = None) -> None:
    """Take a job out of its RQ queue before a worker picks it up (cancel while dispatched)."""
    conn = conn or connection()
    job_id = protocol.job_id(generation_id, attempt)
    try:
        queue(queue_name, conn).remove(job_id)
        Job.fetch(job_id, connection=conn, serializer=JSONSerializer).delete()
    except NoSuchJobError:
        pass


def job_adopt(
    queue_name: str,
    generation_id: int,
    attempt: int,
    *,
    kwargs: dict[str, Any],
    options: dict[str, Any],
    conn: redis.Redis | None = None,
) -> None:
    """Rebuild RQ's record of an attempt that a live worker still runs after Redis lost it (a restart,
    a flush): a started job in its queue's started registry, as the worker would have left it, so the
    RQ dashboard shows it again and the worker's own end of the job lands on a whole record."""
    conn = conn or connection()
    options = dict(options)
    timeout = int(options.pop("job_timeout", 0) or 0) or 3600
    job = queue(queue_name, conn).create_job(
        protocol.JOB_FUNCTION,
        kwargs=kwargs,
        job_id=protocol.job_id(generation_id, attempt),
        status=JobStatus.STARTED,
        timeout=timeout,
        **options,
    )
    job.started_at = now()
    # The entry lapses by itself unless a worker's maintenance renews it; ours is only a stand-in.
    ttl = timeout
    with conn.pipeline() as pipe:
        job.save(pipeline=pipe)
        Execution.create(job, ttl=ttl, pipeline=pipe)
        pipe.execute()


def job_retire(
    generation_id: int, attempt: int, *, why: str, cancelled: bool, conn: redis.Redis | None = None
) -> None:
    """Bring RQ in line with the database once an attempt ended there (lost, or cancelled): out of the
    queue and the started registry, and failed (lost) or canceled, so a dead job never reads `started`
    and a lost one never `finished`."""
    conn = conn or connection()
    try:
        job = Job.fetch(protocol.job_id(generation_id, attempt), connection=conn, serializer=JSONSerializer)
    except NoSuchJobError:
        return
    status = job.get_status(refresh=False)
    if status in (JobStatus.CANCELED, JobStatus.STOPPED) or (status == JobStatus.FAILED and not cancelled):
        return
    with conn.pipeline() as pipe:
        queue(job.origin, conn).remove(job.id, pipeline=pipe)
        job.started_job_registry.remove_executions(job, pipeline=pipe)
        if cancelled:
            job.set_status(JobStatus.CANCELED, pipeline=pipe)
            CanceledJobRegistry(job.origin, connection=conn, serializer=JSONSerializer).add(
                job, ttl=job.failure_ttl or 24 * 3600, pipeline=pipe
            )
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job._handle_failure(why, pipeline=pipe)  # the failed registry, and a result saying why
        pipe.execute()
