"""Streaming under ASGI. Django reads a synchronous iterator of a streaming response whole before
it sends a byte; these responses get an asynchronous one that pulls one chunk at a time.

Each stream's chunks are read on a thread of its own: a slow reader holds up nobody else (the
shared thread of sync views stays free), and a generator that reads the database (a CSV export's
server-side cursor) keeps its connection, which is closed when the stream ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connections
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header

_DONE = object()


def streamed(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """The response, its synchronous content made asynchronous when served under ASGI."""
    if isinstance(request, ASGIRequest) and isinstance(response, StreamingHttpResponse):
        if not response.is_async:
            response.streaming_content = one_chunk_at_a_time(iter(response.streaming_content))
        # The view is done with the database: give its connection back to the pool now, or the
        # request's thread would hold it until the last byte of a download minutes from now.
        close_old_connections()
    return response


def stream_response(
    request: HttpRequest,
    chunks: Iterator[bytes],
    *,
    content_type: str,
    filename: str = "",
    size: int | None = None,
) -> HttpResponseBase:
    """A streaming download of `chunks` (an attachment when it has a file name)."""
    response = StreamingHttpResponse(chunks, content_type=content_type)
    if filename:
        response["Content-Disposition"] = content_disposition_header(True, filename)
    if size is not None:
        response["Content-Length"] = str(size)
    return streamed(request, response)


async def one_chunk_at_a_time(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream")
    pull = sync_to_async(next, thread_sensitive=False, executor=executor)
    try:
        while (chunk := await pull(chunks, _DONE)) is not _DONE:
            yield chunk  # type: ignore[misc]
    finally:
        await sync_to_async(_finish, thread_sensitive=False, executor=executor)(chunks)
        executor.shutdown(wait=False)


def _finish(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    connections.close_all()  # this stream's own thread's connections
