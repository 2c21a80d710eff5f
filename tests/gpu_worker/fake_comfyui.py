"""A fake ComfyUI 0.3.64 that replays what a real server did (``tests/fixtures/comfyui/NN_*.json``).

Each recorded prompt becomes a ``Run``: the answer to ``POST /prompt`` (status and body), every
WebSocket message the prompt's client got, in order and with the recorded gaps (binary preview
frames rebuilt from the saved images), the ``/history`` entry and the files ``/view`` served. A
submitted prompt replays the run a test planned (or the recorded run whose node classes match),
with the submitter's prompt id and client id and file names that follow its ``filename_prefix``.

What the server does around that is modelled on the recordings too: one prompt runs at a time;
``status`` is broadcast, prompt messages go only to the socket of the prompt's ``client_id``
(progress and previews to every socket when there is none); previews are binary type 1, or
type 4 after the ``feature_flags`` handshake (sent before their ``progress`` instead of after);
``/history/<id>`` is ``{}`` until the prompt ends; ``POST /queue`` deletes only pending prompts;
``/interrupt`` lands at the next progress tick or node start (a run whose recording was
interrupted holds its last node until this replay is interrupted too); a socket that reconnects with the
running prompt's client id gets ``status`` and ``executing`` with the current node and no prompt id.

Faults a test can plan: drop the client's socket, kill the whole server (and ``restart`` it
later on the same port, empty), and make each preview block the event loop like the server's PNG
encoding does (HTTP stalls with it). Run standalone with ``python -m tests.gpu_worker.fake_comfyui``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import json
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
# The recorded runs a submitted workflow is matched against when no run was planned.
CATALOG = (
    "01_success_image",
    "03_animated_webp",
    "04_animated_png",
    "05_video_mp4",
    "06_webm_vp9_and_av1",
    "07_progress_binary_legacy",
    "09_preview_image_temp",
    "10_text_and_preview_any",
    "13_runtime_error",
    "14_interrupt_targeted",
    "24_testpack_sleep_progress_and_interrupt",
)
# Stand-ins for outputs whose bytes the recordings did not download.
STAND_INS = {
    ".png": "downloads/01_success_image/2_images_s01_095110_00001_.png",
    ".webp": "downloads/03_animated_webp/3_images_s03_095110_00001_.webp",
    ".mp4": "downloads/05_video_mp4/4_images_s05_095110_00001_.mp4",
    ".webm": "downloads/06_webm_vp9_and_av1/3_images_s06vp9_095110_00001_.webm",
}


# --- Recorded runs ------------------------------------------------------------------------


@dataclass
class Item:
    delay: float  # seconds after the previous item, as recorded
    message: dict[str, Any] | None = None  # a text frame
    image: bytes | None = None  # a preview frame (PNG)
    image_type: str = "image/png"


@dataclass
class Run:
    name: str
    prompt_id: str
    workflow: dict[str, Any]
    status: int
    body: Any
    items: list[Item] = field(default_factory=list)
    history: dict[str, Any] | None = None
    files: dict[tuple[str, str, str], Path] = field(default_factory=dict)  # (type, subfolder, name)

    def index(self, kind: str, node: str | None = None, nth: int = 1) -> int:
        """The position of the ``nth`` text message of this type (and node), for planning faults."""
        seen = 0
        for i, item in enumerate(self.items):
            message = item.message or {}
            data = message.get("data") or {}
            if message.get("type") == kind and (node is None or str(data.get("node")) == node):
                seen += 1
                if seen == nth:
                    return i
        raise LookupError(f"{self.name} has no {kind} {node or ''} #{nth}")


_png_cache: dict[tuple[int, int], bytes] = {}


def noise_png(width: int, height: int) -> bytes:
    """A noisy RGB PNG like the server's previews of noisy frames (for frames not saved in the trace)."""
    if (width, height) not in _png_cache:
        raw = os.urandom(width * height * 3)
        rows = b"".join(b"\x00" + raw[y * width * 3 : (y + 1) * width * 3] for y in range(height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        _png_cache[(width, height)] = (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 1))
            + chunk(b"IEND", b"")
        )
    return _png_cache[(width, height)]


@functools.cache
def load_trace(name: str) -> dict[str, Any]:
    trace: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return trace


@functools.cache
def load_runs(name: str) -> list[Run]:
    """Every POST /prompt of a trace, in order, with what followed it."""
    events = load_trace(name)["events"]
    sockets = [e["socket"] for e in events if e["kind"] == "ws_connect"]
    main_socket = sockets[0] if sockets else None
    runs = []
    posts = [i for i, e in enumerate(events) if e["kind"] == "http_request" and e["path"] == "/prompt"]
    for number, i in enumerate(posts, 1):
        request = events[i]
        response = next(e for e in events[i + 1 :] if e["kind"] == "http_response" and e["path"] == "/prompt")
        body = response.get("json", response.get("text"))
        workflow = (request.get("json") or {}).get("prompt") or {}
        run = Run(f"{name}#{number}", "", workflow, response["status"], body)
        runs.append(run)
        if response["status"] != 200:
            continue
        run.prompt_id = body["prompt_id"]
        end = next(
            (
                j
                for j in range(i + 1, len(events))
                if events[j]["kind"] == "ws_text"
                and events[j]["message"]["type"] == "executing"
                and events[j]["message"]["data"].get("node") is None
                and events[j]["message"]["data"].get("prompt_id") == run.prompt_id
            ),
            None,
        )
        if end is None:
            continue  # the recording followed no socket for this prompt
        run.items = _items(events[i : end + 1], run.prompt_id, main_socket, request["t"])
        run.history, run.files = _after(events[end + 1 :], run.prompt_id)
    return runs


def _items(window: list[dict[str, Any]], prompt_id: str, socket: str | None, start: float) -> list[Item]:
    items: list[Item] = []
    last_t, inside = start, False
    for event in window:
        if event.get("socket") not in (None, socket):
            continue
        if event["kind"] == "ws_text":
            message = event["message"]
            data = message.get("data") or {}
            # Status frames are replayed live (queue lengths differ here); the rest only if ours.
            if message["type"] == "status" or data.get("prompt_id") != prompt_id:
                continue
            inside = inside or message["type"] == "execution_start"
            items.append(Item(event["t"] - last_t, message=message))
        elif event["kind"] == "ws_binary" and event.get("event_type") in (1, 4):
            meta = event.get("metadata") or {}
            if meta.get("prompt_id", prompt_id) != prompt_id or not inside:
                continue
            saved = event.get("saved_to")
            image = (FIXTURES / saved).read_bytes() if saved else noise_png(*event["image_size"])
            items.append(
                Item(event["t"] - last_t, image=image, image_type=meta.get("image_type", "image/png"))
            )
        else:
            continue
        last_t = event["t"]
    # Type 4 recordings send the preview before its progress: store every run in type 1 order.
    for k in range(len(items) - 1):
        after = items[k + 1].message
        if items[k].image is not None and after is not None and after["type"] == "progress":
            items[k], items[k + 1] = items[k + 1], items[k]
            items[k].delay, items[k + 1].delay = items[k + 1].delay, items[k].delay
    return items


def _after(events: list[dict[str, Any]], prompt_id: str) -> tuple[dict[str, Any] | None, dict[Any, Path]]:
    history, files, request = None, {}, None
    for event in events:
        if event["kind"] == "http_request":
            if event["path"] == "/prompt":
                break
            request = event
        elif event["kind"] == "http_response":
            if event["path"] == f"/history/{prompt_id}" and history is None:
                history = (event.get("json") or {}).get(prompt_id)
            elif event["path"] == "/view" and event.get("saved_to") and request is not None:
                params = request.get("params") or {}
                key = (params.get("type", "output"), params.get("subfolder", ""), params["filename"])
                files[key] = FIXTURES / event["saved_to"]
    return history, files


def run(name: str) -> Run:
    """A recorded run by name: ``"05_video_mp4"`` (its first prompt) or ``"02_cached_resubmit#3"``."""
    trace, _, number = name.partition("#")
    return load_runs(trace)[int(number or 1) - 1]


def invalid_case(case: str) -> Run:
    """The run of one case of ``12_invalid_prompts`` (each case is one POST)."""
    events = load_trace("12_invalid_prompts")["events"]
    cases = [e["case"] for e in events if e["kind"] == "note" and "case" in e]
    return load_runs("12_invalid_prompts")[cases.index(case)]


# --- The server ---------------------------------------------------------------------------


@dataclass
class Plan:
    run: Run
    scale: float = 1.0  # multiplies the recorded gaps
    drop_at: int | None = None  # before this item, drop the client's socket(s)
    die_at: int | None = None  # before this item, the server dies
    preview_cost: float = 0.0  # seconds each preview blocks the event loop


@dataclass
class Job:
    number: int
    prompt_id: str
    workflow: dict[str, Any]
    extra_data: dict[str, Any]
    client_id: str | None
    plan: Plan
    node: str | None = None
    finished: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    messages: list[list[Any]] = field(default_factory=list)
    interrupted: bool = False

    def entry(self) -> list[Any]:
        return [self.number, self.prompt_id, self.workflow, self.extra_data, self._outputs_to_run()]

    def _outputs_to_run(self) -> list[str]:
        recorded = (self.plan.run.history or {}).get("prompt")
        if recorded and len(recorded) > 4:
            return [str(node) for node in recorded[4] if node in self.workflow]
        linked = {
            str(v[0])
            for n in self.workflow.values()
            for v in n.get("inputs", {}).values()
            if isinstance(v, list)
        }
        return [node for node in self.workflow if node not in linked]


@dataclass
class Socket:
    ws: web.WebSocketResponse
    request: web.Request
    client_id: str
    metadata: bool = False


class FakeComfyUI:
    """The fake, serving from its own thread; every public method is called from the test's thread."""

    def __init__(self, port: int = 0, *, scale: float = 1.0) -> None:
        """``scale`` multiplies every recorded gap (plans may set their own)."""
        self.port, self.scale = port, scale
        self.plans: list[Plan] = []
        self.requests: list[tuple[str, str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-comfyui", daemon=True)
        self._runner: web.AppRunner | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.sockets: list[Socket] = []
        self.pending: list[Job] = []
        self.running: Job | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str, str], Path] = {}
        self.renamed: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        self.counter = 0
        self.lose_interrupts = 0  # how many of the next interrupts of the running prompt to ignore
        self._wake: asyncio.Event | None = None
        self._executor: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- control, from the test -----------------------------------------------------------

    def start(self) -> FakeComfyUI:
        if not self._thread.is_alive():
            self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._kill())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def kill(self) -> None:
        """The server process dies: sockets cut without a close frame, port closed, state lost."""
        self._call(self._kill())

    def restart(self) -> None:
        """A fresh server on the same port (empty queue and history), as after a crash."""
        self._call(self._start())

    def drop_sockets(self) -> None:
        self._call(self._drop(None))

    def plan(self, run_or_name: Run | str, **options: Any) -> Plan:
        """Replay this run for the next POST /prompt (in planning order)."""
        recorded = run(run_or_name) if isinstance(run_or_name, str) else run_or_name
        plan = Plan(recorded, **{"scale": self.scale, **options})
        self.plans.append(plan)
        return plan

    def calls(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.requests if (m, p) == (method, path)]

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # --- lifecycle ------------------------------------------------------------------------

    async def _start(self) -> None:
        self._reset_state()
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        routes = [
            web.get("/ws", self._ws),
            web.post("/prompt", self._post_prompt),
            web.get("/prompt", self._get_prompt),
            web.get("/queue", self._get_queue),
            web.post("/queue", self._post_queue),
            web.post("/interrupt", self._interrupt),
            web.get("/history/{prompt_id}", self._get_history),
            web.get("/view", self._view),
            web.get("/system_stats", self._system_stats),
            web.get("/features", self._features),
            web.get("/object_info", self._object_info),
            web.get("/object_info/{node_class}", self._object_info_one),
        ]
        app.add_routes(routes)
        app.add_routes([web.route(r.method, "/api" + r.path, r.handler) for r in routes])  # type: ignore[attr-defined]
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._executor = asyncio.get_running_loop().create_task(self._execute_forever())

    async def _kill(self) -> None:
        if self._executor is not None:
            self._executor.cancel()
        for socket in list(self.sockets):
            if socket.request.transport is not None:
                socket.request.transport.abort()
        self.sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _drop(self, client_id: str | None) -> None:
        for socket in [s for s in self.sockets if client_id is None or s.client_id == client_id]:
            self.sockets.remove(socket)
            if socket.request.transport is not None:
                socket.request.transport.abort()

    # --- WebSocket ------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self._log(request)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        socket = Socket(ws, request, client_id)
        self.sockets = [s for s in self.sockets if s.client_id != client_id] + [socket]
        await ws.send_json({"type": "status", "data": {"status": self._exec_info(), "sid": client_id}})
        job = self.running
        if job is not None and job.client_id == client_id and job.node is not None:
            await ws.send_json({"type": "executing", "data": {"node": job.node}})
        first = True
        async for message in ws:
            if message.type == web.WSMsgType.TEXT and first:
                data = json.loads(message.data)
                if data.get("type") == "feature_flags":
                    socket.metadata = bool((data.get("data") or {}).get("supports_preview_metadata"))
                    await ws.send_json({"type": "feature_flags", "data": FEATURES})
            first = False
        if socket in self.sockets:
            self.sockets.remove(socket)
        return ws

    def _exec_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.pending) + (self.running is not None)}}

    async def _send(self, job: Job | None, message: dict[str, Any]) -> None:
        """Route like the server: status to all; prompt messages to the prompt's client, or, for a
        prompt without a client id, progress to everyone and the rest to no one."""
        broadcast = message["type"] == "status" or (
            job is not None
            and job.client_id is None
            and message["type"] in ("progress", "progress_state", "execution_interrupted")
        )
        for socket in list(self.sockets):
            if broadcast or (job is not None and socket.client_id == job.client_id):
                await self._safe_send(socket, json.dumps(message))

    async def _send_preview(self, job: Job, item: Item, progress: dict[str, Any] | None) -> None:
        node = str((progress or {}).get("data", {}).get("node") or job.node)
        for socket in list(self.sockets):
            if job.client_id is not None and socket.client_id != job.client_id:
                continue
            assert item.image is not None
            if socket.metadata:
                meta = json.dumps(
                    {
                        "node_id": node,
                        "prompt_id": job.prompt_id,
                        "display_node_id": node,
                        "parent_node_id": None,
                        "real_node_id": node,
                        "image_type": item.image_type,
                    }
                ).encode()
                frame = struct.pack(">II", 4, len(meta)) + meta + item.image
                await self._safe_send(socket, frame)
                if progress is not None:
                    await self._safe_send(socket, json.dumps(progress))
            else:
                if progress is not None:
                    await self._safe_send(socket, json.dumps(progress))
                await self._safe_send(socket, struct.pack(">II", 1, 2) + item.image)

    async def _safe_send(self, socket: Socket, data: str | bytes) -> None:
        try:
            if isinstance(data, bytes):
                await socket.ws.send_bytes(data)
            else:
                await socket.ws.send_str(data)
        except (ConnectionError, RuntimeError):
            if socket in self.sockets:
                self.sockets.remove(socket)

    # --- HTTP -----------------------------------------------------------------------------

    def _log(self, request: web.Request, body: Any = None) -> None:
        path = request.path.removeprefix("/api")
        self.requests.append((request.method, path, body if body is not None else dict(request.query)))

    async def _post_prompt(self, request: web.Request) -> web.Response:
        self.counter += 1
        try:
            body = await request.json()
        except ValueError:
            self._log(request, await request.text())
            return web.Response(status=500, text=INTERNAL_ERROR)
        self._log(request, body)
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided"}
            return web.json_response({"error": {**error, "extra_info": {}}, "node_errors": {}}, status=400)
        plan = self._pick(body["prompt"])
        if plan is None:
            return web.Response(status=500, text="fake ComfyUI: no recorded run matches this workflow")
        if plan.run.status != 200:
            return web.json_response(plan.run.body, status=plan.run.status)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        client_id = body.get("client_id")
        extra = {**(body.get("extra_data") or {}), **({"client_id": client_id} if client_id else {})}
        job = Job(self.counter - 1, prompt_id, body["prompt"], extra, client_id, plan)
        self.pending.append(job)
        node_errors = plan.run.body.get("node_errors") or {}
        await self._send(None, {"type": "status", "data": {"status": self._exec_info()}})
        assert self._wake is not None
        self._wake.set()
        return web.json_response({"prompt_id": prompt_id, "number": job.number, "node_errors": node_errors})

    def _pick(self, workflow: dict[str, Any]) -> Plan | None:
        if self.plans:
            return self.plans.pop(0)
        classes = sorted(str(n.get("class_type")) for n in workflow.values())
        for name in CATALOG:
            recorded = run(name)
            if sorted(str(n.get("class_type")) for n in recorded.workflow.values()) == classes:
                return Plan(recorded, scale=self.scale)
        return None

    async def _get_prompt(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response(self._exec_info())

    async def _get_queue(self, request: web.Request) -> web.Response:
        self._log(request)
        running = [self.running.entry()] if self.running else []
        # The server does not sort pending prompts either.
        return web.json_response(
            {"queue_running": running, "queue_pending": [j.entry() for j in self.pending]}
        )

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._log(request, body)
        if body.get("clear"):
            self.pending.clear()
        doomed = set(body.get("delete") or [])
        self.pending = [job for job in self.pending if job.prompt_id not in doomed]
        await self._send(None, {"type": "status", "data": {"status": self._exec_info()}})
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        text = await request.text()
        body = json.loads(text) if text else {}
        self._log(request, body)
        target = body.get("prompt_id")
        if self.running is not None and (target is None or target == self.running.prompt_id):
            if self.lose_interrupts > 0:
                # As when the interrupt lands between ComfyUI taking the prompt off its queue and
                # starting it, which clears the flag (seen in 0.3.75's source, not recorded).
                self.lose_interrupts -= 1
            else:
                self.running.interrupted = True
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        self._log(request)
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        query = request.query
        filename, kind = query.get("filename", ""), query.get("type", "output")
        if filename.startswith("/") or ".." in filename or kind not in ("output", "input", "temp"):
            return web.Response(status=400)
        path = self.files.get((kind, query.get("subfolder", ""), filename))
        if path is None or not path.exists():
            return web.Response(status=404)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{filename}"'})

    async def _system_stats(self, request: web.Request) -> web.Response:
        self._log(request)
        events = load_trace("20_misc_endpoints")["events"]
        event = next(e for e in events if e["kind"] == "http_response" and e["path"] == "/system_stats")
        return web.json_response(event.get("json"))

    async def _features(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response(FEATURES)

    async def _object_info(self, request: web.Request) -> web.Response:
        self._log(request)
        body = (FIXTURES / "object_info.json").read_bytes()
        return web.Response(body=body, content_type="application/json")

    async def _object_info_one(self, request: web.Request) -> web.Response:
        self._log(request)
        name = request.match_info["node_class"]
        info = json.loads((FIXTURES / "object_info.json").read_text())
        return web.json_response({name: info[name]} if name in info else {})

    # --- execution ------------------------------------------------------------------------

    async def _execute_forever(self) -> None:
        assert self._wake is not None
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = min(self.pending, key=lambda j: j.number)
            self.pending.remove(job)
            self.running = job
            await self._send(None, {"type": "status", "data": {"status": self._exec_info()}})
            try:
                await self._play(job)
            finally:
                self.running = None

    async def _play(self, job: Job) -> None:
        plan, items = job.plan, job.plan.run.items
        if not items:
            items = _minimal_success(plan.run.prompt_id)
        i = 0
        while i < len(items):
            item = items[i]
            await asyncio.sleep(item.delay * plan.scale)
            if plan.die_at == i:
                asyncio.get_running_loop().create_task(self._kill())
                await asyncio.sleep(3600)
            if plan.drop_at == i:
                await self._drop(job.client_id)
            if item.image is not None:
                time.sleep(plan.preview_cost)  # encoding on the event loop: everything waits
                await self._send_preview(job, item, None)
                i += 1
                continue
            assert item.message is not None
            message = self._rewrite(job, item.message)
            kind, data = message["type"], message["data"]
            if kind == "executing" and data.get("node") is None:
                await self._end(job, "recorded")
                return
            if kind == "execution_interrupted":
                # The recording was interrupted here; this replay was not (yet): the node runs on.
                while not job.interrupted:
                    await asyncio.sleep(0.01)
                await self._end(job, "interrupted")
                return
            if kind == "progress" and i + 1 < len(items) and items[i + 1].image is not None:
                time.sleep(plan.preview_cost)
                await self._send_preview(job, items[i + 1], message)
                i += 1
            else:
                await self._send(job, message)
            self._track(job, message)
            # Interrupts land when a node reports progress or is about to start.
            if job.interrupted and (kind == "progress" or (kind == "executing" and data.get("node"))):
                await self._end(job, "interrupted")
                return
            i += 1

    def _track(self, job: Job, message: dict[str, Any]) -> None:
        kind, data = message["type"], message["data"]
        if kind in ("execution_start", "execution_cached", "execution_success", "execution_error"):
            job.messages.append([kind, data])
        if kind == "executing" and data.get("node"):
            job.node = str(data["node"])
        elif kind == "progress_state":
            for node_id, state in data["nodes"].items():
                if state["state"] == "finished" and node_id not in job.finished:
                    job.finished.append(node_id)
        elif kind == "executed":
            job.outputs[str(data["node"])] = data["output"]

    async def _end(self, job: Job, how: str) -> None:
        if how == "interrupted":
            node = job.node or ""
            data = {
                "prompt_id": job.prompt_id,
                "node_id": node,
                "node_type": job.workflow.get(node, {}).get("class_type"),
                "executed": list(reversed(job.finished)),
                "timestamp": int(time.time() * 1000),
            }
            job.messages.append(["execution_interrupted", data])
            await self._send(job, {"type": "execution_interrupted", "data": data})
            entry = {
                "prompt": [job.number, job.prompt_id, job.workflow, job.extra_data, job.entry()[4]],
                "outputs": job.outputs,
                "status": {"status_str": "error", "completed": False, "messages": job.messages},
                "meta": {},
            }
        else:
            recorded = job.plan.run.history
            entry = self._rewrite(job, recorded) if recorded else _empty_history(job)
            entry["prompt"] = [job.number, job.prompt_id, job.workflow, job.extra_data, job.entry()[4]]
        # History is written before the final status and executing{null} (as the source does).
        self.history[job.prompt_id] = entry
        self.running = None
        await self._send(None, {"type": "status", "data": {"status": self._exec_info()}})
        await self._send(job, {"type": "executing", "data": {"node": None, "prompt_id": job.prompt_id}})

    def _rewrite(self, job: Job, recorded: dict[str, Any]) -> dict[str, Any]:
        """The recorded message or history entry, with this job's prompt id and output file names."""
        text = (
            json.dumps(recorded).replace(job.plan.run.prompt_id, job.prompt_id)
            if job.plan.run.prompt_id
            else None
        )
        result: dict[str, Any] = json.loads(text) if text else copy.deepcopy(recorded)
        cached = set()
        for kind, data in job.messages:
            if kind == "execution_cached":
                cached = set(data.get("nodes") or [])
        outputs = (
            [(result["data"]["node"], result["data"]["output"])] if result.get("type") == "executed" else []
        )
        outputs += list((result.get("outputs") or {}).items()) if "status" in result else []
        for node_id, output in outputs:
            for items in output.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and "filename" in item:
                        self._rename(job, str(node_id), item, node_id in cached)
        return result

    def _rename(self, job: Job, node_id: str, item: dict[str, Any], cached: bool) -> None:
        """Name the file after the submitted ``filename_prefix`` and register what /view serves."""
        original = (item.get("type", "output"), item.get("subfolder", ""), item["filename"])
        recorded_prefix = job.plan.run.workflow.get(node_id, {}).get("inputs", {}).get("filename_prefix")
        prefix = job.workflow.get(node_id, {}).get("inputs", {}).get("filename_prefix")
        if cached and original in self.renamed:
            new = self.renamed[original]  # a cached output lists the file an earlier prompt wrote
        elif isinstance(prefix, str) and isinstance(recorded_prefix, str):
            base = recorded_prefix.rsplit("/", 1)[-1]
            subfolder, _, name = prefix.rpartition("/")
            new = (original[0], subfolder, name + item["filename"][len(base) :])
            self.renamed.setdefault(original, new)
        else:
            new = original
        item["type"], item["subfolder"], item["filename"] = new
        source = job.plan.run.files.get(original) or _all_files().get(original)
        stand_in = FIXTURES / STAND_INS.get(Path(item["filename"]).suffix.lower(), STAND_INS[".png"])
        self.files[new] = source or stand_in


_files_cache: dict[tuple[str, str, str], Path] = {}


def _all_files() -> dict[tuple[str, str, str], Path]:
    """Downloads recorded anywhere (a cached run lists a file an earlier prompt of its trace wrote)."""
    if not _files_cache:
        for name in CATALOG + ("02_cached_resubmit", "21_custom_prompt_id"):
            for recorded in load_runs(name):
                _files_cache.update(recorded.files)
    return _files_cache


def _minimal_success(prompt_id: str) -> list[Item]:
    """For a run the recording did not follow: start, nothing cached, success."""
    now = int(time.time() * 1000)
    data = {"prompt_id": prompt_id, "timestamp": now}
    return [
        Item(0.01, message={"type": "execution_start", "data": data}),
        Item(0.0, message={"type": "execution_cached", "data": {"nodes": [], **data}}),
        Item(0.01, message={"type": "execution_success", "data": data}),
        Item(0.0, message={"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}),
    ]


def _empty_history(job: Job) -> dict[str, Any]:
    return {
        "prompt": [],
        "outputs": job.outputs,
        "status": {"status_str": "success", "completed": True, "messages": job.messages},
        "meta": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake ComfyUI until Ctrl-C.")
    parser.add_argument("--port", type=int, default=8188)
    args = parser.parse_args()
    fake = FakeComfyUI(args.port).start()
    print(f"fake ComfyUI at {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
