"""Delivering outputs to the web app: one streamed HTTP PUT per file to a signed URL."""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx

from gpu_worker import protocol
from gpu_worker.backends import JobError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# 429 and 5xx mean "not now" (a restarting web app, a proxy under load): worth another try.
RETRY_STATUSES = frozenset({408, 429})
DETAIL_LIMIT = 2000


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
    attempts: int = 4,
    backoff: float = 0.5,
) -> None:
    """PUT ``path`` to ``upload_url + quote(filename)``, retrying transient failures.

    Raises ``JobError``: non-retriable for a 4xx (an expired or wrong URL will not heal),
    retriable when the web app stayed unreachable or kept answering 5xx.
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
    with httpx.Client(timeout=TIMEOUT) as client:
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                time.sleep(backoff * 2 ** (attempt - 2))
            try:
                response = client.put(url, content=_chunks(path), headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                log.warning("Upload of %s failed (attempt %s/%s): %s", filename, attempt, attempts, problem)
                continue
            if response.is_success:
                return
            body = response.text[:DETAIL_LIMIT]
            if response.status_code >= 500 or response.status_code in RETRY_STATUSES:
                problem = f"HTTP {response.status_code}: {body}"
                log.warning("Upload of %s failed (attempt %s/%s): %s", filename, attempt, attempts, problem)
                continue
            raise JobError(
                f"Could not deliver the result (HTTP {response.status_code}).",
                detail=f"PUT {filename} -> HTTP {response.status_code}: {body}",
                retriable=False,
            )
    raise JobError(
        "Could not deliver the result: the web app did not accept it; you can retry.",
        detail=f"PUT {filename} failed {attempts} times; last: {problem}",
        retriable=True,
    )
