"""``GET /health`` for the container platforms' health checks: 200 once the backend is ready.

A daemon thread of the worker's parent process serves it; the answer is
``{"ready": bool, "state": "warming" | "idle" | "busy" | "draining"}``, with 503 while not ready.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gpu_worker.heartbeat import block_stop_signals

Status = Callable[[], tuple[bool, str]]


class HealthServer:
    """Answers from ``status()``: (ready, state), asked on every request."""

    def __init__(self, status: Status, *, port: int, host: str = "0.0.0.0") -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(status))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self._thread = threading.Thread(target=self._serve, name="health", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        block_stop_signals()  # inherited by the threads that answer requests
        self.server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()


def _handler(status: Status) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/health":
                self._reply(404, {"error": "not found"})
                return
            try:
                ready, state = status()
            except Exception:  # a health check must answer, never hang or crash the thread
                ready, state = False, "unknown"
            self._reply(200 if ready else 503, {"ready": ready, "state": state})

        def _reply(self, code: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a probe every few seconds would drown the worker's log

    return Handler
