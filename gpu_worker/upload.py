"""Delivering outputs to the web app: one streamed HTTP PUT per file to a signed URL."""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from gpu_worker import protocol
from gpu_worker.backends import JobCancelled, JobError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# 429 and 5xx mean "not now" (a restarting web app, a proxy under load): worth another try.
RETRY_STATUSES = frozenset({408, 429})
DETAIL_LIMIT = 2000
# Between tries: 0.5 s, doubling, never more than this, so a web app back from a restart is seen soon.
MAX_BACKOFF_S = 5.0


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def upload_file(
    upload_url: str,
    path: Path,
    filename: str,
    content_type: str,
    worker: str,
    *,
    attempts: int | None = None,
    backoff: float = 0.5,
    max_backoff: float = MAX_BACKOFF_S,
    patience: float = protocol.DELIVERY_PATIENCE_S,
    should_stop: Callable[[], bool] = lambda: False,
    on_retry: Callable[[str], object] = lambda problem: None,
    auth: tuple[str, str] | None = None,
) -> None:
    """PUT ``path`` to ``upload_url + quote(filename)``, retrying transient failures.

    A finished render is worth waiting for: on a connection error, 408, 429 or 5xx (a restarting web
    app, a proxy under load) it keeps the file and tries again with capped backoff for ``patience``
    seconds (or ``attempts`` tries), calling ``on_retry`` with the problem after each failed try. It
    stops when ``should_stop()`` says the attempt was cancelled or given up (``JobCancelled``).

    Raises ``JobError``: non-retriable for a 4xx (an expired or wrong URL will not heal, and a 409
    means the attempt no longer accepts uploads), retriable when the web app stayed unreachable or
    kept answering 5xx.
    """
    if not filename or "/" in filename or filename in (".", ".."):
        raise ValueError(f"Output filename must be a plain file name, got {filename!r}")
    url = upload_url + urllib.parse.quote(filename)
    size = path.stat().st_size
    headers = {
        "Content-Type": content_type,
        # An explicit length makes httpx stream the body as-is instead of chunked encoding,
        # which WSGI servers handle poorly.
        "Content-Length": str(size),
        protocol.WORKER_HEADER: worker,
    }
    problem = ""
    deadline = time.monotonic() + patience
    attempt = 0
    # An enrolled host's credential (HTTP Basic): the web app accepts an attempt's outputs only
    # from the host that holds the attempt, besides the URL's own signature.
    with httpx.Client(timeout=TIMEOUT, auth=auth) as client:
        while True:
            attempt += 1
            if should_stop():
                raise JobCancelled()
            try:
                response = client.put(url, content=_chunks(path), headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return
                body = response.text[:DETAIL_LIMIT]
                if response.status_code < 500 and response.status_code not in RETRY_STATUSES:
                    raise JobError(
                        f"Could not deliver the result (HTTP {response.status_code}).",
                        detail=f"PUT {filename} -> HTTP {response.status_code}: {body}",
                        retriable=False,
                    )
                problem = f"HTTP {response.status_code}: {body}"
            delay = min(backoff * 2 ** (attempt - 1), max_backoff)
            if (attempts is not None and attempt >= attempts) or time.monotonic() + delay > deadline:
                break
            log.warning(
                "Upload of %s failed (try %s), trying again in %.1f s: %s", filename, attempt, delay, problem
            )
            on_retry(problem)
            _wait(delay, should_stop)
    raise JobError(
        "Could not deliver the result: the web app did not accept it; you can retry.",
        detail=f"PUT {filename} failed {attempt} times; last: {problem}",
        retriable=True,
    )


def _wait(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Sleep, looking at ``should_stop`` twice a second (a cancel is not kept waiting)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if should_stop():
            raise JobCancelled()
        time.sleep(min(left, protocol.CANCEL_POLL_S))
