"""A small client for ComfyUI's HTTP + WebSocket API, as real 0.3.64 and 0.3.75 servers behave.

What it knows about the server (see tests/fixtures/comfyui/PROTOCOL.md): a 200 from ``POST /prompt`` may
still carry ``node_errors``; ``/history/<id>`` is ``{}`` until the prompt has finished; outputs are
fetched through ``/view`` with filename, subfolder and type exactly as listed; ``/interrupt`` and
``POST /queue`` answer an empty 200 whatever they did; binary WebSocket frames are big-endian
(type, format) + PNG/JPEG (type 1), (type, metadata length) + JSON + image (type 4, after the
``feature_flags`` handshake), or (type, node id length) + node id + text (type 3).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8188"
# Previews are PNG-encoded on the server's event loop, and a stream of them stalls every HTTP
# answer for seconds (1.6 s seen); a render must not fail over a slow reply.
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
PROBE_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
CHUNK_SIZE = 1024 * 1024
# A 2048x2048 preview PNG is ~12 MB; websockets' 1 MiB default would drop the connection.
WS_MAX_SIZE = 64 * 1024 * 1024

PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA = 1, 3, 4
IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}


class ComfyError(Exception):
    """ComfyUI answered, but not as expected."""


class ComfyUnavailable(ComfyError):
    """ComfyUI did not answer at all (not started, crashed, restarting, network down)."""


class PromptRejected(ComfyError):
    """``POST /prompt`` refused the workflow (HTTP 400) or an unexpected status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"POST /prompt -> HTTP {status}")
        self.status, self.body = status, body


@dataclass(frozen=True)
class Preview:
    """A binary preview frame: type 1 carries no prompt id, type 4 names prompt and node."""

    image: bytes
    content_type: str
    prompt_id: str | None = None
    node: str | None = None


@dataclass(frozen=True)
class Text:
    """A binary TEXT frame (type 3): text a node sent to the client."""

    node: str
    text: str


def parse_binary(data: bytes) -> Preview | Text | None:
    """Decode one binary WebSocket frame; None for a type this client does not use."""
    if len(data) < 8:
        return None
    kind, second = struct.unpack(">II", data[:8])
    if kind == PREVIEW_IMAGE:
        return Preview(data[8:], IMAGE_FORMATS.get(second, "image/png"))
    if kind == PREVIEW_IMAGE_WITH_METADATA:
        meta = json.loads(data[8 : 8 + second])
        return Preview(
            data[8 + second :],
            str(meta.get("image_type") or "image/png"),
            meta.get("prompt_id"),
            meta.get("node_id"),
        )
    if kind == TEXT:
        return Text(data[8 : 8 + second].decode(), data[8 + second :].decode(errors="replace"))
    return None


Message = dict[str, Any] | Preview | Text


class ComfySocket:
    """One ``/ws`` connection: ``recv`` returns text messages as dicts and binary ones parsed."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def recv(self, timeout: float) -> Message | None:
        """The next message, or None when none came within ``timeout`` seconds.

        Raises ``ComfyUnavailable`` when the connection is gone."""
        from websockets.exceptions import ConnectionClosed

        try:
            data = self.connection.recv(timeout=timeout)
        except TimeoutError:
            return None
        except (ConnectionClosed, OSError) as exc:
            raise ComfyUnavailable(f"WebSocket closed: {exc}") from exc
        if isinstance(data, bytes):
            return parse_binary(data)
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("ComfyUI sent a text frame that is not JSON: %.200s", data)
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:
            log.debug("closing the ComfyUI WebSocket failed", exc_info=True)


class ComfyClient:
    """HTTP calls to one ComfyUI server; ``connect`` opens its WebSocket with our client id."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        client_id: str = "",
        timeout: httpx.Timeout = HTTP_TIMEOUT,
        preview_metadata: bool = True,
    ) -> None:
        """``preview_metadata``: ask for previews tagged with their prompt (binary type 4)."""
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.preview_metadata = preview_metadata
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- HTTP -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ComfyUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise ComfyError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:500]}")
        try:
            return response.json()
        except ValueError as exc:
            raise ComfyError(f"{method} {path} answered something that is not JSON") from exc

    def system_stats(self, timeout: httpx.Timeout | None = None) -> dict[str, Any]:
        kwargs = {"timeout": timeout} if timeout else {}
        result: dict[str, Any] = self._json("GET", "/system_stats", **kwargs)
        return result

    def object_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/object_info")
        return result

    def queue(self) -> dict[str, list[list[Any]]]:
        result: dict[str, list[list[Any]]] = self._json("GET", "/queue")
        return result

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's history entry, or None while it is pending, running or unknown."""
        body = self._json("GET", f"/history/{urllib.parse.quote(prompt_id, safe='')}")
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    def submit(
        self, workflow: dict[str, Any], *, prompt_id: str, extra_data: dict[str, Any]
    ) -> dict[str, Any]:
        """Queue a workflow; returns the 200 body (check its ``node_errors``) or raises ``PromptRejected``."""
        body = {
            "prompt": workflow,
            "client_id": self.client_id,
            "prompt_id": prompt_id,
            "extra_data": extra_data,
        }
        response = self._request("POST", "/prompt", json=body)
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        if response.status_code != 200 or not isinstance(answer, dict):
            raise PromptRejected(response.status_code, answer)
        return answer

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the one running (ComfyUI ignores it otherwise)."""
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    def delete_pending(self, prompt_ids: list[str]) -> None:
        """Take prompts off the queue; only pending ones are removed, a running one goes on."""
        self._request("POST", "/queue", json={"delete": prompt_ids})

    def download(self, item: dict[str, Any], dest: Path) -> str:
        """Stream one listed output (filename, subfolder, type) to ``dest``; returns its content type."""
        params = {
            "filename": item["filename"],
            "subfolder": item.get("subfolder") or "",
            "type": item.get("type") or "output",
        }
        try:
            with self.http.stream("GET", "/view", params=params) as response:
                if response.status_code != 200:
                    raise ComfyError(f"GET /view {params} -> HTTP {response.status_code}")
                with dest.open("wb") as f:
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        f.write(chunk)
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
        except httpx.TransportError as exc:
            raise ComfyUnavailable(f"GET /view {params}: {type(exc).__name__}: {exc}") from exc
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(item["filename"])[0] or "application/octet-stream"
        return content_type

    # --- WebSocket ------------------------------------------------------------------------

    def ws_url(self) -> str:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        host = self.base_url.split("://", 1)[-1]
        return f"{scheme}://{host}/ws?clientId={urllib.parse.quote(self.client_id, safe='')}"

    def connect(self, *, timeout: float = 5.0) -> ComfySocket:
        """Open ``/ws`` with our client id (and ask for previews with metadata, binary type 4)."""
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        try:
            connection = connect(
                self.ws_url(),
                open_timeout=timeout,
                close_timeout=1.0,
                max_size=WS_MAX_SIZE,
                # A backlog of previews can hold a pong back for seconds; the follower notices a
                # dead server through HTTP anyway.
                ping_interval=20,
                ping_timeout=60,
            )
            # Entering the context is how websockets 17 says "closed by us, later"; it returns itself.
            connection = connection.__enter__()
            # Must be the first message on the socket; the server then tags previews with their prompt.
            if self.preview_metadata:
                connection.send(
                    json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                )
        # WebSocketException, not just InvalidHandshake: a server that takes the TCP connection and
        # drops it mid-handshake (restarting, or a proxy in front of it) raises ConnectionClosedError,
        # which escaped here and failed the job as an internal error instead of a reconnect.
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ComfyUnavailable(f"WebSocket {self.ws_url()}: {type(exc).__name__}: {exc}") from exc
        return ComfySocket(connection)


# --- Errors for people ---------------------------------------------------------------------


def _node_label(node_id: str, class_type: str | None) -> str:
    return f"{class_type} (node {node_id})" if class_type else f"node {node_id}"


def _input_error(error: dict[str, Any]) -> str:
    extra = error.get("extra_info") or {}
    name = extra.get("input_name")
    message, details = str(error.get("message") or "invalid"), str(error.get("details") or "")
    if error.get("type") == "custom_validation_failed" and details:
        # "image - Invalid image file: x.png": already names the input.
        return details
    if details and details != name:
        message = f"{message} ({details})"
    return f"{name}: {message}" if name else message


def describe_node_errors(body: Any) -> str:
    """One line per failing node: "EmptyImage (node 1): width: Value 0 smaller than min of 1"."""
    if not isinstance(body, dict):
        return str(body)[:500] or "no details"
    parts = []
    for node_id, node in (body.get("node_errors") or {}).items():
        label = _node_label(node_id, node.get("class_type"))
        errors = "; ".join(_input_error(e) for e in node.get("errors") or []) or "invalid"
        parts.append(f"{label}: {errors}")
    if not parts:
        error = body.get("error") or {}
        text = (
            str(error.get("message") or "the workflow is invalid") if isinstance(error, dict) else str(error)
        )
        details = error.get("details") if isinstance(error, dict) else ""
        parts.append(f"{text} ({details})" if details else text)
    return "; ".join(parts)


def describe_execution_error(data: dict[str, Any]) -> str:
    """ "SaveVideo (node 3) failed: av.error.ExternalError: ..." from an ``execution_error``."""
    label = _node_label(str(data.get("node_id")), data.get("node_type"))
    exception = str(data.get("exception_message") or "").strip() or "no message"
    kind = data.get("exception_type")
    return f"{label} failed: {kind}: {exception}" if kind else f"{label} failed: {exception}"


def execution_error_detail(data: dict[str, Any]) -> str:
    """Everything an admin may want: traceback and the inputs the node got."""
    lines = [describe_execution_error(data), "", *map(str, data.get("traceback") or [])]
    inputs = data.get("current_inputs")
    if inputs:
        lines += ["", "inputs: " + json.dumps(inputs)[:5000]]
    return "\n".join(lines)
