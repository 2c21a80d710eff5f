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
    timeout: int            seconds the template allows; a job past it is interrupted and failed

Events go to the Redis Stream ``EVENTS_STREAM`` as one field ``data`` holding a JSON
object: ``{"type", "generation_id", "attempt", "worker", "ts", ...}`` plus, by type:

    started     -
    progress    percent (0-100 float), step, steps, message
    succeeded   outputs: [filenames uploaded, in order]
    failed      message (user-facing), detail (for admins), retriable (bool)
    cancelled   -  (the worker stopped the attempt because it was asked to)
    preview     image (base64 of a small JPEG or PNG, at most PREVIEW_MAX_BYTES before
                encoding, at most PREVIEW_MAX_SIDE pixels a side), content_type
                ("image/jpeg" or "image/png"), width, height; at most one every
                PREVIEW_MIN_INTERVAL_S per attempt, advisory (may be dropped), never
                terminal: show the latest one on the job card while it renders

Cancel: the web app sets ``cancel_key(generation_id, attempt)`` (``CANCEL_LOST`` when it gave up on
the attempt, else ``CANCEL_CANCELLED``; with a TTL)
and publishes ``{"generation_id", "attempt"}`` as JSON on ``CANCEL_CHANNEL``. A running
job checks the key at least every CANCEL_POLL_S and stops its backend (ComfyUI: a
targeted interrupt), uploads nothing, and emits ``cancelled``.

Refused: a worker that will not run a job it took (a function other than ``JOB_FUNCTION``,
positional arguments, RQ callbacks, or a signature that does not verify: see ``signing``) fails
it in RQ without importing anything and emits ``refused`` with ``job_id`` and ``reason``.

GPU hosts: an enrolled host holds one Redis ACL user ``<user>`` and writes only under it: its
events go to ``host_events_stream(user)``, its workers' names are ``<user>`` or ``<user>:<suffix>``
and are listed in ``host_workers_set(user)`` instead of ``WORKERS_SET``. The web side lists the
enrolled users in ``HOSTS_SET``. Uploads carry the same user and secret (HTTP Basic).

Heartbeat: every worker process writes the hash ``worker_key(name)`` every
HEARTBEAT_INTERVAL_S, and at once when it takes or ends a job, with fields
``name, state (warming|idle|busy|delivering|draining), queues
(comma-separated), generation_id, attempt (empty when idle), ts`` (and, when known,
``provider, price_per_hour, billing_seconds, gpu, vram_gb, templates``) and a TTL of
HEARTBEAT_TTL_S, and adds its name to the set ``WORKERS_SET``. ``gpu`` and ``vram_gb`` (GiB) are
empty for the first seconds, then the name ("cpu" without CUDA, "unknown" when it cannot tell);
``templates`` is comma-separated slugs, empty when the worker does not say. ``delivered`` is the job id
(``job_id``) of the last attempt the worker finished with every output uploaded and ``succeeded``
emitted: the proof of a success whose event a Redis restart lost. A worker beats from
its start (``warming`` while its backend loads) and deletes the hash when it exits cleanly.
"""

from __future__ import annotations

JOB_FUNCTION = "gpu_worker.jobs.run_generation"
EVENTS_STREAM = "workshop:events"
EVENTS_STREAM_MAXLEN = 100_000

STARTED = "started"
PROGRESS = "progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
EVENT_TYPES = (STARTED, PROGRESS, SUCCEEDED, FAILED, CANCELLED)
PREVIEW = "preview"
REFUSED = "refused"

CANCEL_CHANNEL = "workshop:cancel"
# The cancel key's value: the web app gave up on the attempt (lost), or someone cancelled it.
CANCEL_LOST = "lost"
CANCEL_CANCELLED = "cancelled"
CANCEL_POLL_S = 0.5
CANCEL_TTL_S = 24 * 3600

WORKERS_SET = "workshop:workers"
HOSTS_SET = "workshop:hosts"
HEARTBEAT_INTERVAL_S = 5.0
# The heartbeat's state while a finished render waits for the web app to take it (a restart,
# a 5xx): the attempt is still claimed, and the worker takes no other job meanwhile.
DELIVERING = "delivering"
# How long a worker keeps trying to deliver a finished render before giving up on it (RQ's job
# timeout allows for it). The signed upload URL lasts longer (UPLOAD_URL_MAX_AGE, 6 h).
DELIVERY_PATIENCE_S = 15 * 60
HEARTBEAT_TTL_S = 60

# Workers throttle progress at the source: channel layers drop messages when a
# consumer falls behind, and one event per frame would flood twenty pages.
PROGRESS_MIN_INTERVAL_S = 0.25

# Previews are advisory and bulky: two a second at most, small enough that a stream of
# 100,000 entries stays affordable (most previews are 5-20 KB; this is the hard cap).
PREVIEW_MIN_INTERVAL_S = 0.5
PREVIEW_MAX_BYTES = 64 * 1024
PREVIEW_MAX_SIDE = 320

# Header a worker sends with every upload so the web app can log who sent it.
WORKER_HEADER = "X-Workshop-Worker"


def job_id(generation_id: int, attempt: int) -> str:
    """RQ job id: one per generation and attempt, so a re-dispatch never collides."""
    return f"gen-{generation_id}-a{attempt}"


def cancel_key(generation_id: int, attempt: int) -> str:
    return f"workshop:cancel:g{generation_id}:a{attempt}"


def worker_key(name: str) -> str:
    return f"workshop:worker:{name}"


def host_events_stream(username: str, base: str = EVENTS_STREAM) -> str:
    """The events stream of one GPU host's credential: the conductor knows who sent each event."""
    return f"{base}:{username}"


def accept_queue(username: str) -> str:
    """A queue only this host may use: `gpu-worker accept` starts a worker on it that takes no
    workshop job (the host's ACL allows it besides the fleet's queues)."""
    return f"accept-{username}"


def host_workers_set(username: str) -> str:
    return f"{WORKERS_SET}:{username}"


def in_namespace(name: str, username: str) -> bool:
    """Whether a worker name belongs to a host's credential: ``user`` itself or ``user:<suffix>``."""
    return name == username or name.startswith(username + ":")
