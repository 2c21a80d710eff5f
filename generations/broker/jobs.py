"""RQ's side of a generation: the queues, and the job of each attempt (JSON only, never pickle)."""

from __future__ import annotations

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

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
