"""The ComfyUI backend: one job = one prompt on the ComfyUI server next to this worker.

A run opens the WebSocket first (ComfyUI drops messages for a client with no socket), submits
the workflow under our own prompt id with our client id and a unique ``filename_prefix`` per
save node, follows the socket (progress, previews, the end), reconciles through ``/queue`` and
``/history`` whenever the socket drops or goes quiet, then streams every listed output file to
the job's work directory. Cancel and timeout interrupt the prompt (and take it off the queue
when it has not started) and wait for ComfyUI to reach a safe point.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

from gpu_worker.backends import (
    BackendUnavailable,
    JobCancelled,
    JobContext,
    JobError,
    JobSpec,
    Output,
    timeout_error,
)
from gpu_worker.comfy import (
    DEFAULT_URL,
    PROBE_TIMEOUT,
    ComfyClient,
    ComfyError,
    ComfySocket,
    ComfyUnavailable,
    Message,
    Preview,
    PromptRejected,
    describe_execution_error,
    describe_node_errors,
    execution_error_detail,
)

log = logging.getLogger(__name__)

# The nodes' share of the progress bar; fetching outputs takes it to DOWNLOADED_PERCENT.
RUN_PERCENT = 90.0
DOWNLOADED_PERCENT = 95.0
INTERRUPT_AGAIN_S = 0.5  # while stopping, how often the interrupt is sent again
TICK_S = 0.2  # how often the follower looks at cancel, deadline and silence between messages
DETAIL_LIMIT = 20000

DIED = (
    "ComfyUI stopped answering in the middle of the generation (it may have crashed or restarted); "
    "you can retry."
)
UNREACHABLE = "ComfyUI is not reachable on this GPU worker; you can retry."
VANISHED = "ComfyUI lost the generation (it was removed from its queue or ComfyUI restarted); you can retry."


def prompt_id_for(job: JobSpec) -> str:
    """Ours, not ComfyUI's: a rerun of the same attempt finds (and follows) its own prompt."""
    return f"workshop-g{job.generation_id}-a{job.attempt}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def with_unique_prefixes(workflow: dict[str, Any], job: JobSpec, token: str) -> dict[str, Any]:
    """A copy whose every literal ``filename_prefix`` names this job, run and node.

    ComfyUI reuses cached results: an identical rerun writes no new file and lists the old one.
    With a prefix of its own every run writes its own files (``workshop/g12-a1-3fa9c0d1/n9_00001_.mp4``).
    """
    rewritten = copy.deepcopy(workflow)
    for node_id, node in rewritten.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict) and isinstance(inputs.get("filename_prefix"), str):
            inputs["filename_prefix"] = (
                f"workshop/g{job.generation_id}-a{job.attempt}-{token}/n{_safe(node_id)}"
            )
    return rewritten


def _node_order(node_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in re.split(r"[^0-9]+", node_id) if part) or (0,)


def needed_nodes(workflow: dict[str, Any], outputs: list[str] | None) -> set[str]:
    """The nodes ComfyUI will execute: the outputs and everything they are linked from.

    Without the server's list of output nodes, every node that nothing links from counts as one."""
    linked: dict[str, set[str]] = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        linked[node_id] = {
            str(value[0])
            for value in inputs.values()
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)
        }
    if outputs is None:
        sources = set().union(*linked.values()) if linked else set()
        outputs = [node_id for node_id in workflow if node_id not in sources]
    seen: set[str] = set()
    todo = [node_id for node_id in outputs if node_id in workflow]
    while todo:
        node_id = todo.pop()
        if node_id not in seen:
            seen.add(node_id)
            todo.extend(source for source in linked.get(node_id, ()) if source in workflow)
    return seen


def output_files(history: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(node id, index, item) for every file any node listed, under any key (images, gifs, audio...).

    Videos are listed under ``images`` with ``animated``; text outputs carry no filename and are skipped."""
    files = []
    outputs = history.get("outputs") or {}
    for node_id in sorted(outputs, key=_node_order):
        index = 0
        for items in (outputs[node_id] or {}).values():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str) and item["filename"]:
                    index += 1
                    files.append((node_id, index, item))
    return files


def _ext(filename: str) -> str:
    match = re.search(r"\.[A-Za-z0-9]{1,8}$", filename)
    return match.group(0).lower() if match else ""


class ComfyUIBackend:
    name = "comfyui"

    def __init__(
        self,
        *,
        url: str = DEFAULT_URL,
        client_id: str = "workshop-worker",
        connect_wait: float = 10.0,
        dead_after: float = 15.0,
        stop_grace: float = 20.0,
        quiet_after: float = 5.0,
        preview_metadata: bool = True,
    ) -> None:
        """``connect_wait``: how long a job waits for an unreachable ComfyUI before failing;
        ``dead_after``: how long ComfyUI may stay unreachable mid-job; ``stop_grace``: how long
        a cancel or timeout waits for the interrupt to land; ``quiet_after``: seconds of silence
        on the socket before checking ``/queue`` and ``/history``."""
        self.url, self.client_id = url.rstrip("/"), client_id
        self.connect_wait, self.dead_after = connect_wait, dead_after
        self.stop_grace, self.quiet_after = stop_grace, quiet_after
        self.preview_metadata = preview_metadata

    def client(self) -> ComfyClient:
        return ComfyClient(self.url, client_id=self.client_id, preview_metadata=self.preview_metadata)

    def check(self) -> None:
        with self.client() as client:
            try:
                client.system_stats(timeout=PROBE_TIMEOUT)
            except ComfyError as exc:
                raise BackendUnavailable(f"ComfyUI at {self.url} is not answering: {exc}") from exc

    def run(self, job: JobSpec, ctx: JobContext) -> list[Output]:
        with self.client() as client:
            return _Run(self, client, job, ctx).execute()


class _Run:
    """The state of one job while it follows its prompt."""

    def __init__(self, backend: ComfyUIBackend, client: ComfyClient, job: JobSpec, ctx: JobContext) -> None:
        self.backend, self.client, self.job, self.ctx = backend, client, job, ctx
        self.prompt_id = prompt_id_for(job)
        self.workflow = with_unique_prefixes(job.workflow, job, secrets.token_hex(4))
        self.socket: ComfySocket | None = None
        self.needed = needed_nodes(self.workflow, None)
        self.cached: set[str] = set()
        self.started_nodes: list[str] = []
        self.finished_nodes: set[str] = set()
        self.node: str | None = None
        self.node_value: tuple[float, float] | None = None
        self.node_counts = False  # node_value is (step, steps), not a fraction in other units
        self.running = False  # our prompt is the one executing
        self.ending_at: float | None = None  # a terminal message came; executing{null} should follow
        self.done = False
        self.history: dict[str, Any] | None = None
        self.stopping: str | None = None  # "cancel" or "timeout"
        self.stop_sent_at = self.interrupt_sent_at = 0.0
        self.last_heard = time.monotonic()
        self.percent = 0.0

    # --- the whole run --------------------------------------------------------------------

    def execute(self) -> list[Output]:
        self._open_socket(wait=self.backend.connect_wait)
        try:
            if not self._attach():
                self._submit()
            self._follow()
        except ComfyUnavailable as exc:
            raise JobError(DIED, f"{self.backend.url}: {exc}", retriable=True) from exc
        except ComfyError as exc:
            raise JobError("ComfyUI answered unexpectedly; you can retry.", str(exc), retriable=True) from exc
        finally:
            if self.socket is not None:
                self.socket.close()
        return self._finish()

    def _open_socket(self, *, wait: float) -> None:
        """Connect, retrying for ``wait`` seconds; JobError (retriable) when ComfyUI stays away."""
        deadline, delay = time.monotonic() + wait, 0.2
        while True:
            try:
                self.socket = self.client.connect()
                return
            except ComfyUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise JobError(UNREACHABLE, f"{self.backend.url}: {exc}", retriable=True) from exc
                self._check_cancel_before_start()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _check_cancel_before_start(self) -> None:
        if self.ctx.cancelled():
            raise JobCancelled()

    # --- submit ---------------------------------------------------------------------------

    def _attach(self) -> bool:
        """Follow our prompt if a previous run of this very attempt left it queued or done.

        RQ may run a job twice; ComfyUI accepts a reused prompt id and runs it again, so look first.
        Also clears what this worker left behind for other attempts (a killed work-horse's prompt)."""
        queue = self.client.queue()
        stale_pending, stale_running = [], []
        mine = False
        for state, items in (
            ("running", queue.get("queue_running", [])),
            ("pending", queue.get("queue_pending", [])),
        ):
            for item in items:
                prompt_id, extra = item[1], item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
                if prompt_id == self.prompt_id:
                    mine = True
                    self.running = state == "running"
                    self._learn_outputs(item)
                elif extra.get("client_id") == self.client.client_id and str(prompt_id).startswith(
                    "workshop-"
                ):
                    (stale_running if state == "running" else stale_pending).append(prompt_id)
        if stale_pending:
            log.warning("taking stale prompts of this worker off ComfyUI's queue: %s", stale_pending)
            self.client.delete_pending(stale_pending)
        for prompt_id in stale_running:
            log.warning("interrupting a stale prompt of this worker: %s", prompt_id)
            self.client.interrupt(prompt_id)
        if mine:
            log.info("following prompt %s, already queued by an earlier run of this job", self.prompt_id)
            return True
        history = self.client.history(self.prompt_id)
        if history is not None and (history.get("status") or {}).get("status_str") == "success":
            log.info("prompt %s already finished; collecting its outputs", self.prompt_id)
            self.history, self.done = history, True
            return True
        return False

    def _submit(self) -> None:
        self._check_cancel_before_start()
        extra = {"workshop": {"generation_id": self.job.generation_id, "attempt": self.job.attempt}}
        try:
            answer = self.client.submit(self.workflow, prompt_id=self.prompt_id, extra_data=extra)
        except PromptRejected as exc:
            detail = json.dumps(exc.body)[:DETAIL_LIMIT] if not isinstance(exc.body, str) else exc.body
            if exc.status == 400:
                raise JobError(
                    f"ComfyUI refused the workflow: {describe_node_errors(exc.body)}", detail, retriable=False
                ) from exc
            raise JobError(
                f"ComfyUI could not take the workflow (HTTP {exc.status}); you can retry.",
                detail,
                retriable=True,
            ) from exc
        if answer.get("node_errors"):
            # Queued anyway with only the valid outputs: a take missing half its outputs is not
            # what the template promised, so stop it and fail.
            self._stop_prompt()
            raise JobError(
                f"ComfyUI refused part of the workflow: {describe_node_errors(answer)}",
                json.dumps(answer)[:DETAIL_LIMIT],
                retriable=False,
            )
        self._report(0.0, message="Queued in ComfyUI")
        # The queue entry names the output nodes ComfyUI will run: the node count for progress.
        queue = self.client.queue()
        for item in queue.get("queue_running", []) + queue.get("queue_pending", []):
            if item[1] == self.prompt_id:
                self._learn_outputs(item)

    def _learn_outputs(self, item: list[Any]) -> None:
        if len(item) > 4 and isinstance(item[4], list):
            self.needed = needed_nodes(self.workflow, [str(node_id) for node_id in item[4]])

    # --- follow ---------------------------------------------------------------------------

    def _follow(self) -> None:
        """Read the socket until our prompt has ended (or stopped); survive drops and restarts
        of the socket, give up when ComfyUI stays unreachable for ``dead_after`` seconds."""
        unreachable_since: float | None = None
        delay = 0.1
        while not self.done:
            try:
                if self.socket is None:
                    self.socket = self.client.connect()
                    self._reconcile()  # whatever was sent while we were away is lost
                    self.last_heard = time.monotonic()
                else:
                    self._step()
                unreachable_since, delay = None, 0.1
            except ComfyUnavailable as exc:
                now = time.monotonic()
                if unreachable_since is None:
                    log.warning("lost ComfyUI while following %s (%s); reconnecting", self.prompt_id, exc)
                    unreachable_since = now
                if now - unreachable_since > self.backend.dead_after:
                    raise
                if self.socket is not None:
                    self.socket.close()
                    self.socket = None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _step(self) -> None:
        assert self.socket is not None
        message = self.socket.recv(TICK_S)
        now = time.monotonic()
        if message is not None:
            self.last_heard = now
            self._handle(message)
        if not self.done and self.ending_at is not None and now - self.ending_at > 2.0:
            self._collect_history()
        if not self.done:
            self._check_stop(now)
        if not self.done and now - self.last_heard > self.backend.quiet_after:
            self.last_heard = now
            self._reconcile()

    def _reconcile(self) -> None:
        """Where is our prompt? Finished (history), still queued or running, or gone."""
        history = self.client.history(self.prompt_id)
        if history is not None:
            self.history, self.ending_at = history, self.ending_at or time.monotonic()
            self._collect_history()
            return
        queue = self.client.queue()
        for state in ("queue_running", "queue_pending"):
            for item in queue.get(state, []):
                if item[1] == self.prompt_id:
                    self.running = state == "queue_running"
                    return
        # ComfyUI writes history before it takes a prompt off the queue: look once more.
        history = self.client.history(self.prompt_id)
        if history is not None:
            self.history, self.ending_at = history, self.ending_at or time.monotonic()
            self._collect_history()
        elif self.stopping:
            self.done = True  # taken off the queue before it started: stopped, no history
        else:
            raise JobError(
                VANISHED, f"prompt {self.prompt_id} is in neither /queue nor /history", retriable=True
            )

    def _handle(self, message: Message) -> None:
        if isinstance(message, Preview):
            ours = message.prompt_id == self.prompt_id if message.prompt_id else self.running
            if ours and not self.stopping:
                self.ctx.preview(message.image, message.content_type)
            return
        if not isinstance(message, dict):
            return  # a binary TEXT frame: nothing for the job card
        kind, data = message.get("type"), message.get("data") or {}
        prompt_id = data.get("prompt_id")
        if kind == "executing" and prompt_id is None and data.get("node") is not None:
            # Sent on reconnect, without a prompt id: it is ours when ours is the one running.
            if self.running:
                self._enter_node(str(data["node"]))
            return
        if prompt_id != self.prompt_id:
            return
        if kind == "execution_start":
            self.running = True
            self._report(1.0, message="Started in ComfyUI")
        elif kind == "execution_cached":
            self.cached = {str(node) for node in data.get("nodes") or []}
        elif kind == "executing":
            if data.get("node") is None:
                self.running = False
                self.ending_at = self.ending_at or time.monotonic()
                self._collect_history()
            else:
                self._enter_node(str(data["node"]))
        elif kind == "progress":
            self._node_progress(str(data.get("node")), data.get("value"), data.get("max"))
        elif kind == "progress_state":
            for node_id, state in (data.get("nodes") or {}).items():
                if state.get("state") == "finished":
                    self.finished_nodes.add(str(node_id))
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            self.ending_at = self.ending_at or time.monotonic()

    def _enter_node(self, node_id: str) -> None:
        if self.node is not None and self.node != node_id:
            self.finished_nodes.add(self.node)
        if node_id not in self.started_nodes:
            self.started_nodes.append(node_id)
        self.node, self.node_value = node_id, None
        self._report_node()

    def _node_progress(self, node_id: str, value: Any, maximum: Any) -> None:
        if node_id != self.node:
            self._enter_node(node_id)
        if isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
            self.node_value = (float(value), float(maximum))
            # Steps only when the node counts in ints (a sampler, a frame counter). TestSleep on a real
            # server reports seconds as floats (0.0102 of 2.0 ... 2.0 of 2.0): its last tick is
            # integral but it is no "step 2 of 2" after a run of percentages.
            self.node_counts = isinstance(value, int) and isinstance(maximum, int)
        self._report_node()

    def _report_node(self) -> None:
        todo = [node_id for node_id in self.needed if node_id not in self.cached] or list(self.needed)
        total = max(len(todo), len(self.started_nodes), 1)
        position = max(len(self.started_nodes), 1)
        fraction = 0.0
        if self.node_value is not None:
            fraction = min(1.0, self.node_value[0] / self.node_value[1])
        percent = 1.0 + (RUN_PERCENT - 1.0) * min(1.0, (position - 1 + fraction) / total)
        node = self.workflow.get(self.node or "", {})
        label = node.get("class_type", "node") if isinstance(node, dict) else "node"
        message = f"Node {position} of {total} ({label})"
        step = steps = None
        if self.node_value is not None:
            value, maximum = self.node_value
            if self.node_counts:
                step, steps = int(value), int(maximum)
                message += f": step {step} of {steps}"
            else:
                message += f": {100 * fraction:.0f}%"
        self._report(percent, step, steps, message)

    def _report(
        self, percent: float, step: int | None = None, steps: int | None = None, message: str = ""
    ) -> None:
        self.percent = max(self.percent, percent)
        self.ctx.progress(self.percent, step, steps, message)

    # --- stop: cancel and timeout ---------------------------------------------------------

    def _check_stop(self, now: float) -> None:
        if self.stopping is None:
            if self.ctx.cancelled():
                self.stopping = "cancel"
            elif self.ctx.expired():
                self.stopping = "timeout"
            else:
                return
            log.info("stopping prompt %s (%s)", self.prompt_id, self.stopping)
            self.stop_sent_at = self.interrupt_sent_at = now
            self._stop_prompt()
            self._reconcile()
        elif now - self.stop_sent_at > self.backend.stop_grace:
            # The running node has not reached a safe point yet; the next prompt will queue
            # behind it in ComfyUI, which is better than holding the worker.
            log.warning(
                "prompt %s did not stop within %.0f s; leaving it", self.prompt_id, self.backend.stop_grace
            )
            self.done = True
        elif now - self.interrupt_sent_at >= INTERRUPT_AGAIN_S:
            # ComfyUI lists a prompt as running a moment before it starts executing it, and
            # starting clears the interrupt flag: an interrupt sent in between is lost. Again,
            # until the prompt ends (a targeted interrupt of a prompt not running does nothing).
            self.interrupt_sent_at = now
            self.client.interrupt(self.prompt_id)

    def _stop_prompt(self) -> None:
        # Delete first: an interrupt only reaches a running prompt, a delete only a pending one.
        self.client.delete_pending([self.prompt_id])
        self.client.interrupt(self.prompt_id)

    # --- the end --------------------------------------------------------------------------

    def _collect_history(self) -> None:
        """After the terminal message: the history entry (written before ``executing{null}``)."""
        if self.history is None:
            deadline = time.monotonic() + 10.0
            while (history := self.client.history(self.prompt_id)) is None:
                if time.monotonic() > deadline:
                    raise JobError(
                        VANISHED, f"prompt {self.prompt_id} ended but has no history entry", retriable=True
                    )
                time.sleep(0.2)
            self.history = history
        self.done = True

    def _finish(self) -> list[Output]:
        if self.stopping == "cancel":
            raise JobCancelled()
        if self.stopping == "timeout":
            raise timeout_error(self.ctx.timeout, f"prompt {self.prompt_id} interrupted at its deadline")
        history = self.history or {}
        status = history.get("status") or {}
        messages = status.get("messages") or []
        last_name, last_data = (messages[-1][0], messages[-1][1]) if messages else ("", {})
        if status.get("status_str") != "success" or last_name in ("execution_error", "execution_interrupted"):
            if last_name == "execution_error":
                raise JobError(
                    describe_execution_error(last_data),
                    execution_error_detail(last_data)[:DETAIL_LIMIT],
                    True,
                )
            if last_name == "execution_interrupted":
                node = last_data.get("node_type") or last_data.get("node_id")
                raise JobError(
                    "The generation was interrupted in ComfyUI (not by this app); you can retry.",
                    f"execution_interrupted at {node}: {json.dumps(last_data)[:2000]}",
                    retriable=True,
                )
            raise JobError(
                "ComfyUI did not finish the generation; you can retry.",
                json.dumps(status)[:DETAIL_LIMIT],
                retriable=True,
            )
        return self._download(history)

    def _download(self, history: dict[str, Any]) -> list[Output]:
        files = output_files(history)
        if not files:
            raise JobError(
                "The workflow saved no files: it needs a save node (SaveVideo, SaveImage...).",
                f"history outputs: {json.dumps(history.get('outputs'))[:2000]}",
                retriable=False,
            )
        slug = _safe(self.job.template).replace("_", "-")
        base = f"{slug}-g{self.job.generation_id}-a{self.job.attempt}"
        outputs = []
        for count, (node_id, index, item) in enumerate(files, 1):
            if self.ctx.cancelled():
                raise JobCancelled()
            ext = _ext(item["filename"])
            name = f"{base}{ext}" if len(files) == 1 else f"{base}-n{_safe(node_id)}-{index}{ext}"
            path = self.ctx.workdir / name
            try:
                content_type = self.client.download(item, path)
            except ComfyUnavailable as exc:
                raise JobError(DIED, str(exc), retriable=True) from exc
            except ComfyError as exc:
                raise JobError(
                    "ComfyUI listed an output file it could not serve; you can retry.",
                    str(exc),
                    retriable=True,
                ) from exc
            outputs.append(Output(path=Path(path), filename=name, content_type=content_type))
            done = RUN_PERCENT + (DOWNLOADED_PERCENT - RUN_PERCENT) * count / len(files)
            self._report(done, count, len(files), f"Fetched output {count} of {len(files)}")
        return outputs
