"""File responses that honour HTTP Range requests, so a browser can scrub a video.

Under ASGI the file is read asynchronously, one chunk at a time on the event loop's worker threads
(no thread of its own per download), and only the chunk being sent is held: with
workshop.asgi.paced, a slow reader of a 4 GB take costs a few hundred kB, whether or not a proxy
serves takes itself (MEDIA_ACCEL_REDIRECT)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import IO
from urllib.parse import quote

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from generations.files.sniff import MEDIA_TYPES

CHUNK = 256 * 1024
# Stored media came from GPU hosts: even a file that got past the probe must not run as a page on our
# origin. The proxy adds the same headers to what it serves (deploy/Caddyfile).
MEDIA_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


def media_headers(response: HttpResponse) -> HttpResponse:
    for name, value in MEDIA_HEADERS.items():
        response[name] = value
    return response


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def _read_async(f: IO[bytes], start: int, length: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, f.seek, start)
        while length > 0:
            data = await loop.run_in_executor(None, f.read, min(CHUNK, length))
            if not data:
                break
            length -= len(data)
            yield data
    finally:
        f.close()


def _stream(f: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    try:
        f.seek(start)
        while length > 0:
            data = f.read(min(CHUNK, length))
            if not data:
                break
            length -= len(data)
            yield data
    finally:
        f.close()


def ranged_file_response(
    request: HttpRequest,
    f: IO[bytes],
    *,
    size: int,
    content_type: str,
    filename: str,
    attachment: bool = False,
) -> HttpResponse:
    """200 with the whole file, 206 with one byte range, or 416 for a range outside it."""
    start, end, status = 0, size - 1, 200
    header = request.headers.get("Range", "").strip()
    match = _RANGE.match(header) if header else None
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:  # "bytes=-N": the last N bytes
            start = max(size - int(match[2]), 0)
        if start > end or start >= size:
            f.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    length = end - start + 1 if size else 0
    # The test client (WSGI) reads a plain iterator; daphne gets the asynchronous one.
    read = _read_async if isinstance(request, ASGIRequest) else _stream
    response = StreamingHttpResponse(read(f, start, length), status=status, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Disposition"] = content_disposition_header(attachment, filename)
    response["Cache-Control"] = "private, max-age=3600"
    return media_headers(response)


def stored_file_response(
    request: HttpRequest, field: FieldFile, *, content_type: str, filename: str, attachment: bool = False
) -> HttpResponse:
    """Serve a stored file after the caller's permission check: through the proxy's internal
    location when MEDIA_ACCEL_REDIRECT is set (nginx streams it, Range included), else ourselves.
    Only the media types the probe can find are served as such (a take stored before the probe
    chose types may say anything)."""
    if content_type not in MEDIA_TYPES:
        content_type = "application/octet-stream"
    prefix = settings.MEDIA_ACCEL_REDIRECT
    if prefix:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = prefix.rstrip("/") + "/" + quote(field.name)
        response["Content-Disposition"] = content_disposition_header(attachment, filename)
        return media_headers(response)
    return ranged_file_response(
        request,
        field.open("rb"),
        size=field.size,
        content_type=content_type,
        filename=filename,
        attachment=attachment,
    )
