"""The contract between the web app and the GPU workers.

Both sides import this module (it is plain Python: the web app may import it,
it never imports Django). Everything that crosses Redis or HTTP is described here.

Job (RQ, JSON serializer, enqueued by dotted path ``JOB_FUNCTION``) takes keyword
arguments, all plain JSON:

    generation_id: int      the Generation row
    attempt: int            the dispatch attempt; every event and upload names it
    template: str           the WorkflowTemplate's slug (for logs and backends)
    workflow: dict          the resolved ComfyUI workflow, API format
    params: dict            the validated user-facing parameters (prompt, seed, frames...)
    upload_url: str         signed, expiring; PUT each output to ``upload_url + quote(filename)``

Events go to the Redis Stream ``EVENTS_STREAM`` as one field ``data`` holding a JSON
object: ``{"type", "generation_id", "attempt", "worker", "ts", ...}`` plus, by type:

    started     -
    progress    percent (0-100 float), step, steps, message
    succeeded   outputs: [filenames uploaded, in order]
    failed      message (user-facing), detail (for admins), retriable (bool)
"""

from __future__ import annotations

JOB_FUNCTION = "gpu_worker.jobs.run_generation"
EVENTS_STREAM = "workshop:events"
EVENTS_STREAM_MAXLEN = 100_000

STARTED = "started"
PROGRESS = "progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
EVENT_TYPES = (STARTED, PROGRESS, SUCCEEDED, FAILED)

# Workers throttle progress at the source: channel layers drop messages when a
# consumer falls behind, and one event per frame would flood twenty pages.
PROGRESS_MIN_INTERVAL_S = 0.25

# Header a worker sends with every upload so the web app can log who sent it.
WORKER_HEADER = "X-Workshop-Worker"


def job_id(generation_id: int, attempt: int) -> str:
    """RQ job id: one per generation and attempt, so a re-dispatch never collides."""
    return f"gen-{generation_id}-a{attempt}"
