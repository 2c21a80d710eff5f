"""Request bodies refused before they cost anything, under daphne.

Twisted reads a request's whole body (to memory, or to a temporary file past 100 KB) before daphne
hands the request to Django, so a view that refuses an upload has already paid for its body: a
200 MiB PUT with a bogus token was written to disk in full before its 403. This gate acts when the
headers are in, before the first body byte is kept:

- every request: a declared length above REQUEST_BODY_MAX_BYTES (MAX_TAKE_BYTES for uploads) is
  refused with 413, and a chunked body is cut off once it passes the limit;
- an upload PUT (``/api/uploads/<token>/<name>``): a token whose signature or age is wrong, or no
  credential at all, is refused at once (no database: the reactor must not wait); then the reading
  of the connection is paused while a thread checks the credential and that its host holds the
  attempt, the same checks the view makes (``dispatch.uploads.upload_check``). Only then is the
  body read. What arrived before the pause is at most one socket read (64 KB) plus what the kernel
  buffers, a few hundred KB.

A refusal is written straight to the socket and the connection closed (the client cannot be made to
stop sending otherwise). Behind Caddy, its forward_auth asks ``/api/upload-check`` first and the
body never leaves the proxy; this gate covers daphne reached directly. ``install()`` patches
daphne's request class once (workshop.asgi calls it); outside daphne nothing changes.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Any

log = logging.getLogger(__name__)

UPLOAD_PATH = re.compile(r"^/api/uploads/([^/]+)/[^/]+$")
REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 413: "Content Too Large"}


def _refuse(request: Any, status: int, message: str) -> None:
    if getattr(request, "_gate_refused", False):
        return
    request._gate_refused = True
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Refused')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if status == 401:
        head += 'WWW-Authenticate: Basic realm="workshop uploads"\r\n'
    transport = request.channel.transport if request.channel else None
    if transport is not None:
        transport.write(head.encode() + b"\r\n" + body)
        transport.loseConnection()


def screen(method: str, path: str, headers: dict[str, str], length: int | None) -> tuple[int, str] | None:
    """What can be refused from the request line and headers alone (no database)."""
    from django.conf import settings

    from generations.dispatch.uploads import UploadRefused, upload_token_verify

    match = UPLOAD_PATH.match(path) if method == "PUT" else None
    limit = settings.MAX_TAKE_BYTES if match else settings.REQUEST_BODY_MAX_BYTES
    if length is not None and length > limit:
        return 413, "The request body is larger than this server accepts."
    if match:
        try:
            upload_token_verify(urllib.parse.unquote(match[1]))
        except UploadRefused as exc:
            return exc.status, str(exc)
        if not headers.get("authorization", "").lower().startswith("basic "):
            return 401, "A GPU host's credential is required (HTTP Basic: its user and secret)."
    return None


def check_upload(path: str, authorization: str) -> tuple[int, str] | None:
    """The upload's checks that need the database (run on a thread)."""
    from django.db import close_old_connections

    from generations.dispatch.uploads import UploadRefused, upload_check
    from generations.fleet.hosts import host_authenticate

    match = UPLOAD_PATH.match(path)
    assert match is not None
    try:
        host = host_authenticate(authorization)
        if host is None:
            return 401, "A GPU host's credential is required (HTTP Basic: its user and secret)."
        upload_check(token=urllib.parse.unquote(match[1]), host=host)
    except UploadRefused as exc:
        return exc.status, str(exc)
    finally:
        close_old_connections()
    return None


def install() -> None:
    try:
        from daphne.http_protocol import WebRequest
        from twisted.internet.threads import deferToThread
        from twisted.web import http
    except ImportError:
        return
    if getattr(WebRequest, "_workshop_gate", False):
        return
    got_length, content_chunk = WebRequest.gotLength, WebRequest.handleContentChunk

    def gotLength(self: Any, length: int | None) -> None:  # noqa: N802 - Twisted's name
        got_length(self, length)
        self._gate_received, self._gate_refused = 0, False
        # The request line is still the channel's: Twisted hands it to the request after the body.
        method = getattr(self.channel, "_command", b"").decode("latin-1")
        path = urllib.parse.urlsplit(getattr(self.channel, "_path", b"").decode("latin-1")).path
        headers = {
            k.decode("latin-1").lower(): v[0].decode("latin-1")
            for k, v in self.requestHeaders.getAllRawHeaders()
        }
        try:
            verdict = screen(method, path, headers, length)
        except Exception:
            log.exception("body gate failed; letting the view decide")
            return
        upload = method == "PUT" and UPLOAD_PATH.match(path) is not None
        from django.conf import settings

        self._gate_limit = settings.MAX_TAKE_BYTES if upload else settings.REQUEST_BODY_MAX_BYTES
        if verdict is not None:
            _refuse(self, *verdict)
            return
        if upload:
            # Read nothing more until the database says this host may send this body.
            transport = self.channel.transport
            transport.pauseProducing()

            def decided(verdict: tuple[int, str] | None) -> None:
                if verdict is not None:
                    _refuse(self, *verdict)
                elif self.channel is not None:
                    transport.resumeProducing()

            def failed(failure: Any) -> None:
                log.error("upload check failed: %s", failure.getErrorMessage())
                transport.resumeProducing()  # the view checks again

            deferToThread(check_upload, path, headers.get("authorization", "")).addCallbacks(decided, failed)

    def handleContentChunk(self: Any, data: bytes) -> None:  # noqa: N802
        if getattr(self, "_gate_refused", False):
            return
        self._gate_received = getattr(self, "_gate_received", 0) + len(data)
        if self._gate_received > getattr(self, "_gate_limit", float("inf")):
            _refuse(self, 413, "The request body is larger than this server accepts.")
            return
        content_chunk(self, data)

    def requestReceived(self: Any, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if not getattr(self, "_gate_refused", False):  # a refused request never reaches the app
            request_received(self, command, path, version)

    def connectionLost(self: Any, reason: Any) -> None:  # noqa: N802
        if getattr(self, "_gate_refused", False):
            http.Request.connectionLost(self, reason)  # daphne never saw this request
            return
        connection_lost(self, reason)

    request_received, connection_lost = WebRequest.requestReceived, WebRequest.connectionLost
    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.requestReceived = requestReceived
    WebRequest.connectionLost = connectionLost
    WebRequest._workshop_gate = True
