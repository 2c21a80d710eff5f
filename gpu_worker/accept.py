"""``gpu-worker accept``: the first hour on a new GPU host, as one command.

In order, one line each, then a table and one JSON line (the benchmarks' convention):

1. ``doctor``: GPU (CUDA, VRAM, driver), Redis, ComfyUI, node classes, a test upload;
2. the synthetic backend on the device: frames per second rendered and encoded (1280x720, 121 frames);
3. ComfyUI driven by the worker: a real ``gpu-worker run`` on a private queue, timed from its start
   to ``idle`` (next to ComfyUI's own start -> ready when this command launches ComfyUI), then
   20 small model-free runs through the worker's ComfyUI backend: its overhead over ComfyUI's own
   execution (gpu_worker/measure.py, the same code as bench/comfyui.py);
4. cancel -> GPU free, 5 cancels in the middle of ComfyUI's ``TestSleep`` node;
5. with ``--workflow FILE`` (the weights on the host), one real run of it: time, peak VRAM, output size.

Exit status 1 on any problem. With ``--comfyui-command`` it launches ComfyUI itself (first alone, to
time its start, then under the worker, as the worker image does) and loads ComfyUI's own test nodes
(``tests/execution/testing_nodes`` next to its ``main.py``) for step 4 without touching
``custom_nodes``. Run it before the host takes workshop jobs: it shares their ComfyUI otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import logging
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from gpu_worker.backends.comfyui import ComfyUIBackend
    from gpu_worker.comfy import ComfyClient

log = logging.getLogger(__name__)

GIB = 1024**3
TEST_NODES = Path("tests") / "execution" / "testing_nodes"  # in ComfyUI's source tree
POLL_S = 0.05
PR_SET_PDEATHSIG = 1  # prctl(2)
# Torch import and CUDA initialisation as each worker start pays it, in a fresh process.
_CUDA_INIT = """
import json, time
began = time.monotonic()
import torch
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.zeros(1, device=device).sum().item()
print(json.dumps([device, time.monotonic() - began]))
"""


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"expected even sides of at least 16, got {text!r}")
    return width, height


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gpu_worker.comfy import DEFAULT_URL
    from gpu_worker.jobs import DEFAULT_REDIS_URL

    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument(
        "--comfyui-url",
        default=os.environ.get("COMFYUI_URL", DEFAULT_URL),
        help="the ComfyUI of this host (default: %(default)s)",
    )
    parser.add_argument(
        "--comfyui-command",
        default=os.environ.get("COMFYUI_COMMAND", ""),
        help="launch ComfyUI with this command (listening at --comfyui-url) to time its start; "
        "default: use the ComfyUI already running there",
    )
    parser.add_argument("--comfyui-log", type=Path, help="ComfyUI's output (default: in --workdir)")
    parser.add_argument("--upload-url", help="a signed upload URL of the web app, for doctor's test upload")
    parser.add_argument(
        "--allow-cpu",
        action="store_true",
        help="no CUDA GPU is a warning, not a problem (this machine, rehearsals)",
    )
    parser.add_argument(
        "--workflow",
        type=Path,
        action="append",
        default=[],
        help="a workflow in API format whose weights are on this host: run once (step 5); repeatable",
    )
    parser.add_argument(
        "--synthetic-size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT of step 2 (default: 1280x720)"
    )
    parser.add_argument(
        "--synthetic-frames", type=_count(1), default=121, help="frames of step 2 (default: %(default)s)"
    )
    parser.add_argument(
        "--runs", type=_count(1), default=20, help="model-free runs of step 3 (default: %(default)s)"
    )
    parser.add_argument(
        "--cancels", type=_count(0), default=5, help="cancels of step 4 (default: %(default)s)"
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=600.0,
        help="seconds ComfyUI and the worker may take to become ready (default: %(default)s)",
    )
    parser.add_argument(
        "--workflow-timeout", type=float, default=1800.0, help="seconds one --workflow run may take"
    )
    parser.add_argument(
        "--workdir", type=Path, help="logs and outputs go here (default: a new temporary folder)"
    )


# --- the report ------------------------------------------------------------------------------


@dataclass
class Acceptance:
    """Prints the step lines as they come; keeps the rows of the closing table and the figures of
    the JSON line. Every PROBLEM line counts."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    problems: int = 0

    def line(self, tag: str, level: str, text: str, details: Sequence[str] = ()) -> None:
        self.problems += level == "PROBLEM"
        print(f"[{tag}] {level}: {text}", flush=True)
        for detail in details:
            print(f"      {detail}", flush=True)

    def row(self, label: str, level: str, figures: str) -> None:
        self.rows.append((label, level, figures))

    def table(self) -> None:
        width = max([len(label) for label, _, _ in self.rows] + [4]) + 2
        print(f"\n{'step':<{width}}{'result':<9}figures")
        for label, level, figures in self.rows:
            print(f"{label:<{width}}{level:<9}{figures}")
        print("all steps passed" if not self.problems else f"{self.problems} problem(s)", flush=True)

    def json_line(self) -> None:
        print(
            json.dumps({**self.figures, "problems": self.problems, "goal_met": not self.problems}), flush=True
        )


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def describe(exc: BaseException) -> str:
    from gpu_worker.backends import JobError

    if isinstance(exc, JobError):
        return f"{exc.message} ({exc.detail[:500]})" if exc.detail else exc.message
    return f"{type(exc).__name__}: {exc}"


# --- launching ComfyUI and the worker -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def system_stats(url: str) -> dict[str, Any] | None:
    """ComfyUI's /system_stats, or None when it does not answer."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/system_stats", timeout=2)
        stats = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return stats if isinstance(stats, dict) else {}


def with_test_nodes(command: str, workdir: Path) -> tuple[str, Path | None]:
    """The command plus an extra paths file that loads ComfyUI's own test nodes (TestSleep) from
    its source tree, when the command names ComfyUI's ``main.py`` and the tree has them; and the
    folder they come from. ``custom_nodes`` stays as it is."""
    argv = shlex.split(command)
    for arg in argv:
        nodes = Path(arg).parent / TEST_NODES
        if Path(arg).name == "main.py" and (nodes / "testing-pack").is_dir():
            config = workdir / "accept-test-nodes.yaml"
            # A JSON string is a valid YAML scalar, whatever the path holds.
            config.write_text(f"workshop_accept:\n  custom_nodes: {json.dumps(str(nodes.resolve()))}\n")
            return shlex.join([*argv, "--extra-model-paths-config", str(config)]), nodes.resolve()
    return command, None


def tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _die_with_accept() -> None:
    """In a child, before exec: Linux sends it SIGTERM when this command dies, even by SIGKILL (a
    test's timeout), so no worker or ComfyUI outlives it; elsewhere nothing."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


class Process:
    """A child in a process group of its own (ComfyUI alone, or the worker and the ComfyUI it
    launches): ``stop`` sends SIGTERM, then SIGKILL to the group after ``grace`` seconds."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        with log_path.open("ab") as out:
            self.started = time.monotonic()
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_accept,
            )
        self.log_path = log_path

    def exited(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace: float = 30.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def launch_comfyui(command: str, url: str, log_path: Path, timeout: float) -> tuple[Process, float]:
    """ComfyUI started alone, as its own start -> ready is timed: (its process, seconds)."""
    comfyui = Process(shlex.split(command), log_path)
    while time.monotonic() - comfyui.started < timeout:
        if system_stats(url) is not None:
            return comfyui, time.monotonic() - comfyui.started
        if (code := comfyui.exited()) is not None:
            raise RuntimeError(f"ComfyUI exited with status {code}; its log ends: {tail(log_path)}")
        time.sleep(POLL_S)
    comfyui.stop(grace=10)
    raise RuntimeError(
        f"ComfyUI did not answer at {url} within {timeout:.0f} s; its log ends: {tail(log_path)}"
    )


@dataclass
class WorkerStart:
    process: Process
    idle_s: float
    comfyui_answering_s: float | None  # when the worker launched ComfyUI: it answered this long after


def start_worker(
    args: argparse.Namespace, *, name: str, command: str, log_path: Path, comfyui_log: Path
) -> WorkerStart:
    """A real ``gpu-worker run --backend comfyui`` on a queue of its own (it takes no workshop job),
    timed from its start to ``idle`` through its /health endpoint; with ``command`` it launches
    ComfyUI itself, as the worker image does. Stop it with ``.process.stop()``: it drains, says
    goodbye and stops the ComfyUI it launched."""
    from gpu_worker import host, protocol, signing

    token = uuid.uuid4().hex[:8]
    port = free_port()
    # An enrolled host's worker may use only the fleet's queues and its own accept queue (its ACL).
    credential = host.credential_from_url(args.redis_url)
    queue = protocol.accept_queue(credential.username) if credential else f"accept-{token}"
    argv = [sys.executable, "-m", "gpu_worker", "run", "--backend", "comfyui", "--redis-url", args.redis_url]
    argv += ["--comfyui-url", args.comfyui_url, "--name", name, "--queues", queue]
    argv += ["--events-stream", f"workshop:accept:{token}", "--health-port", str(port)]
    if command:
        argv += ["--comfyui-command", command, "--comfyui-log", str(comfyui_log)]
    # A serverless worker's limits would make it exit, and stop its ComfyUI, in the middle of the steps.
    env = {k: v for k, v in os.environ.items() if k not in ("GPU_WORKER_IDLE_EXIT_S", "GPU_WORKER_MAX_JOBS")}
    # It takes no job, so any key will do where the host was not given the web app's yet.
    env.setdefault("JOB_VERIFY_KEY", signing.public_key_text(Ed25519PrivateKey.generate()))
    worker = Process(argv, log_path, env)
    answering: float | None = None
    while time.monotonic() - worker.started < args.start_timeout:
        if (code := worker.exited()) is not None:
            raise RuntimeError(f"the worker exited with status {code}; its log ends: {tail(log_path)}")
        if answering is None and command and system_stats(args.comfyui_url) is not None:
            answering = time.monotonic() - worker.started
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if health.status_code == 200 and health.json().get("state") == "idle":
                return WorkerStart(worker, time.monotonic() - worker.started, answering)
        except (httpx.HTTPError, ValueError):
            pass  # not serving yet
        time.sleep(POLL_S)
    worker.stop()
    raise RuntimeError(
        f"the worker was not idle within {args.start_timeout:.0f} s; its log ends: {tail(log_path)}"
    )


class VramPeak:
    """The most memory in use on CUDA device 0 while the block runs, by every process (ComfyUI's
    included), polled through torch; ``available`` is False without CUDA."""

    def __init__(self, interval: float = POLL_S) -> None:
        import torch

        self.torch, self.interval = torch, interval
        self.available = torch.cuda.is_available()
        self.peak = self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="vram-peak", daemon=True)

    def _sample(self) -> None:
        free, self.total = self.torch.cuda.mem_get_info(0)
        self.peak = max(self.peak, self.total - free)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> VramPeak:
        if self.available:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()


# --- the steps -----------------------------------------------------------------------------------


@dataclass
class Host:
    """What the steps share: the ComfyUI launched alone, the worker, the backend the runs use."""

    args: argparse.Namespace
    workdir: Path
    name: str
    first_id: int
    command: str = ""  # the ComfyUI command, test nodes included
    comfyui: Process | None = None  # launched alone
    alone_s: float | None = None
    worker: WorkerStart | None = None
    services: dict[str, bool] = field(default_factory=dict)


def launch_alone(acc: Acceptance, host: Host) -> None:
    args = host.args
    host.command, nodes = with_test_nodes(args.comfyui_command, host.workdir)
    if system_stats(args.comfyui_url) is not None:
        acc.line(
            "ComfyUI",
            "PROBLEM",
            f"a ComfyUI already answers at {args.comfyui_url}: stop it, or leave out --comfyui-command "
            "to accept the one that runs",
        )
        host.command = ""
        return
    log_path = args.comfyui_log or host.workdir / "comfyui.log"
    try:
        host.comfyui, host.alone_s = launch_comfyui(
            host.command, args.comfyui_url, log_path, args.start_timeout
        )
    except RuntimeError as exc:
        acc.line("ComfyUI", "PROBLEM", f"launched alone with {host.command!r}: {exc}")
        host.command = ""  # the worker would only wait for it as long again
        return
    loaded = f"; its test nodes from {nodes}" if nodes else "; no test nodes found next to its main.py"
    acc.line("ComfyUI", "ok", f"launched alone: answering after {seconds(host.alone_s)}{loaded}")


def step_doctor(acc: Acceptance, host: Host) -> None:
    """``gpu-worker doctor`` as it is; notes which services answered, for the later steps."""
    from gpu_worker.doctor import run_doctor

    args = host.args
    options = argparse.Namespace(
        redis_url=args.redis_url,
        comfyui_url=args.comfyui_url,
        workflow=list(args.workflow),
        upload_url=args.upload_url,
        allow_cpu=args.allow_cpu,
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_doctor(options)
    lines = out.getvalue().splitlines()[:-1]  # the last one is doctor's own summary
    if not args.upload_url:
        lines.append("warning  upload: not checked: pass --upload-url (a signed upload URL of the web app)")
    problems = [line for line in lines if line.startswith("PROBLEM")]
    warnings = [line for line in lines if line.startswith("warning")]
    gpus = [line.split(": ", 1)[1] for line in lines if line.startswith("ok       GPU")]
    level = "PROBLEM" if problems else "warning" if warnings else "ok"
    ok = len(lines) - len(problems) - len(warnings)
    counts = f"{ok} ok, {len(warnings)} warning(s), {len(problems)} problem(s)"
    acc.line("1/5 doctor", level, f"{counts}; GPU: {gpus[0] if gpus else 'none'}", problems + warnings)
    acc.problems += max(0, len(problems) - 1)  # each of doctor's problems counts
    acc.row("1 doctor", level, counts)
    acc.figures.update(doctor_problems=len(problems), doctor_warnings=len(warnings))
    host.services = {
        "redis": not any(line.startswith("PROBLEM  Redis") for line in lines),
        "comfyui": system_stats(args.comfyui_url) is not None,
    }


def step_synthetic(acc: Acceptance, host: Host) -> None:
    from gpu_worker.backends.synthetic import RenderParams, render

    width, height = host.args.synthetic_size
    frames = host.args.synthetic_frames
    label = f"{frames} frames {width}x{height}"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _CUDA_INIT], capture_output=True, text=True, timeout=300, check=True
        )
        device, init_s = json.loads(probe.stdout.strip().splitlines()[-1])
        import torch

        gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        # A short render first: the device's and the encoder's first use are not what is measured.
        render(RenderParams("acceptance", 1, 2, width, height), host.workdir / "warmup.mp4", device=device)
        path = host.workdir / "synthetic.mp4"
        result = render(RenderParams("acceptance", 2, frames, width, height), path, device=device)
    except Exception as exc:  # whatever broke, the other steps still run
        acc.line("2/5 synthetic", "PROBLEM", f"{label}: {describe(exc)}")
        acc.row("2 synthetic", "PROBLEM", describe(exc)[:70])
        return
    fps = frames / result.seconds
    on = f"cuda ({gpu})" if device == "cuda" else device
    text = f"{label} on {on} in {result.seconds:.2f} s: {fps:.1f} fps rendered and encoded"
    text += (
        f" ({result.codec}, {path.stat().st_size / 1e6:.1f} MB); torch import + {device} init {init_s:.1f} s"
    )
    acc.line("2/5 synthetic", "ok", text)
    acc.row(f"2 synthetic on {device}", "ok", f"{fps:.1f} fps ({label} in {result.seconds:.1f} s)")
    acc.figures.update(
        gpu=gpu,
        torch_init_s=rounded(init_s, 2),
        synthetic_device=device,
        synthetic_frames=frames,
        synthetic_size=f"{width}x{height}",
        synthetic_seconds=rounded(result.seconds, 3),
        synthetic_fps=rounded(fps, 2),
    )


def worker_start(acc: Acceptance, host: Host) -> str:
    """Starts the worker (it launches ComfyUI when this command launched it alone before): the
    text for step 3's line, or "" after a PROBLEM line."""
    args = host.args
    if host.comfyui is not None:
        host.comfyui.stop()  # the worker launches its own, as on the day
        host.comfyui = None
    try:
        if not host.services.get("redis"):
            raise RuntimeError("the worker was not started: Redis does not answer (see doctor)")
        if not host.command and not host.services.get("comfyui"):
            raise RuntimeError(f"the worker was not started: no ComfyUI answers at {args.comfyui_url}")
        host.worker = start_worker(
            args,
            name=host.name,
            command=host.command,
            log_path=host.workdir / "worker.log",
            comfyui_log=args.comfyui_log or host.workdir / "comfyui.log",
        )
    except RuntimeError as exc:
        acc.line("3/5 ComfyUI", "PROBLEM", str(exc))
        acc.row("3 worker start -> idle", "PROBLEM", str(exc).split(";")[0][:70])
        return ""
    start = host.worker
    acc.figures.update(
        worker_start_to_idle_s=rounded(start.idle_s, 2),
        comfyui_answering_in_worker_start_s=rounded(start.comfyui_answering_s, 2),
    )
    alone = seconds(host.alone_s) if host.alone_s is not None else "not measured (it was running)"
    acc.row("3 worker start -> idle", "ok", f"{seconds(start.idle_s)}; ComfyUI's own start -> ready {alone}")
    text = f"worker start -> idle {seconds(start.idle_s)}"
    if start.comfyui_answering_s is not None:
        text += f" (the ComfyUI it launched answered after {seconds(start.comfyui_answering_s)})"
    if host.alone_s is None:
        alone += ": pass --comfyui-command to measure it"
    return f"{text}; ComfyUI's own start -> ready {alone}"


def step_runs(acc: Acceptance, host: Host, backend: ComfyUIBackend, client: ComfyClient) -> None:
    from gpu_worker.measure import percentile, time_runs

    runs = host.args.runs
    started = worker_start(acc, host)
    acc.figures["comfyui_start_to_ready_s"] = rounded(host.alone_s, 2)
    stats = system_stats(host.args.comfyui_url)
    if stats is None:
        acc.line(
            "3/5 ComfyUI", "PROBLEM", f"{runs} model-free runs: no ComfyUI answers at {host.args.comfyui_url}"
        )
        acc.row(f"3 ComfyUI runs ({runs})", "PROBLEM", "no ComfyUI")
        return
    acc.figures["comfyui_version"] = (stats.get("system") or {}).get("comfyui_version")
    try:
        times = time_runs(backend, client, count=runs, workdir=host.workdir, first_id=host.first_id)
    except Exception as exc:
        acc.line("3/5 ComfyUI", "PROBLEM", f"{runs} model-free runs failed: {describe(exc)}")
        acc.row(f"3 ComfyUI runs ({runs})", "PROBLEM", describe(exc)[:70])
        return
    median, p95 = statistics.median(times.overheads), percentile(times.overheads, 0.95)
    comfy = statistics.median(times.comfys)
    figures = f"overhead {seconds(median)} median, {seconds(p95)} p95; ComfyUI's own {seconds(comfy)}"
    text = f"{runs} model-free runs: the worker's overhead {seconds(median)} median, {seconds(p95)} p95, over"
    text += f" ComfyUI's own execution {seconds(comfy)} median"
    acc.line("3/5 ComfyUI", "ok", f"{text}; {started}" if started else text)
    acc.row(f"3 ComfyUI runs ({runs})", "ok", figures)
    acc.figures.update(
        runs=runs,
        job_wall_median_s=rounded(statistics.median(times.walls)),
        comfyui_execution_median_s=rounded(comfy),
        overhead_median_s=rounded(median),
        overhead_p95_s=rounded(p95),
    )


def step_cancels(acc: Acceptance, host: Host, backend: ComfyUIBackend, client: ComfyClient) -> None:
    from gpu_worker.measure import SLEEP_NODE, time_cancels

    count, url = host.args.cancels, host.args.comfyui_url
    label = f"4 cancel -> GPU free ({count})"
    if count == 0:
        acc.line("4/5 cancel", "skipped", "--cancels 0")
        acc.row(label, "skipped", "--cancels 0")
        return
    try:
        has_sleep = bool(httpx.get(f"{url}/object_info/{SLEEP_NODE}", timeout=30).json().get(SLEEP_NODE))
    except (httpx.HTTPError, ValueError):
        has_sleep = False
    if not has_sleep:
        acc.line(
            "4/5 cancel",
            "PROBLEM",
            f"ComfyUI lacks {SLEEP_NODE}, the node the cancels interrupt. It comes with ComfyUI's source, "
            f"in {TEST_NODES}/testing-pack (no weights): pass --comfyui-command with ComfyUI's main.py and "
            "this command loads it, or link that folder into ComfyUI's custom_nodes and restart ComfyUI; "
            "--cancels 0 skips this step",
        )
        acc.row(label, "PROBLEM", f"no {SLEEP_NODE} node")
        return
    try:
        times = time_cancels(
            backend, client, count=count, workdir=host.workdir, first_id=host.first_id + 10**4
        )
    except Exception as exc:
        acc.line("4/5 cancel", "PROBLEM", f"{count} cancels mid-node: {describe(exc)}")
        acc.row(label, "PROBLEM", describe(exc)[:70])
        return
    median, worst = statistics.median(times.frees), max(times.frees)
    level = "ok" if times.queue_empty == count else "PROBLEM"
    text = f"{count} cancels mid-node: the worker free {seconds(median)} median, {seconds(worst)} max after"
    text += f" the cancel; ComfyUI's queue empty after {times.queue_empty} of them"
    acc.line("4/5 cancel", level, text)
    acc.row(
        label,
        level,
        f"{seconds(median)} median, {seconds(worst)} max; queue empty {times.queue_empty}/{count}",
    )
    acc.figures.update(
        cancels=count,
        cancel_to_free_median_s=rounded(median),
        cancel_to_free_max_s=rounded(worst),
        queue_empty_after_cancel=times.queue_empty,
    )


def step_workflows(acc: Acceptance, host: Host, backend: ComfyUIBackend, client: ComfyClient) -> None:
    paths: list[Path] = host.args.workflow
    acc.figures["workflows"] = []
    if not paths:
        acc.line(
            "5/5 workflow", "skipped", "no --workflow (pass the LTX-2 workflow once its weights are here)"
        )
        acc.row("5 workflow", "skipped", "no --workflow")
    for offset, path in enumerate(paths, 1):
        run_workflow(acc, host, backend, client, path, host.first_id + 2 * 10**4 + offset)


def run_workflow(
    acc: Acceptance, host: Host, backend: ComfyUIBackend, client: ComfyClient, path: Path, generation_id: int
) -> None:
    from gpu_worker.backends import JobContext, JobSpec
    from gpu_worker.backends.comfyui import prompt_id_for
    from gpu_worker.measure import comfy_seconds

    label = f"5 workflow {path.name}"
    try:
        workflow = json.loads(path.read_text())
        if not isinstance(workflow, dict) or isinstance(workflow.get("nodes"), list):
            raise ValueError("not in API format: save it with ComfyUI's Workflow -> Export (API)")
        outdir = host.workdir / f"workflow-{path.stem}"
        outdir.mkdir(exist_ok=True)
        timeout = host.args.workflow_timeout
        ctx = JobContext(
            workdir=outdir,
            on_progress=Progress(path.name),
            timeout=timeout,
            deadline=time.monotonic() + timeout,
        )
        job = JobSpec(generation_id, 1, path.stem, workflow, {})
        with VramPeak() as vram:
            began = time.monotonic()
            outputs = backend.run(job, ctx)
            wall = time.monotonic() - began
        comfy = comfy_seconds(client, prompt_id_for(job))
    except Exception as exc:
        acc.line("5/5 workflow", "PROBLEM", f"{path}: {describe(exc)}")
        acc.row(label, "PROBLEM", describe(exc)[:70])
        return
    size = sum(output.path.stat().st_size for output in outputs)
    peak = (
        f"peak VRAM {vram.peak / GIB:.1f} of {vram.total / GIB:.1f} GiB"
        if vram.available
        else "no CUDA: no VRAM"
    )
    files = ", ".join(str(output.path) for output in outputs)
    text = f"{path.name}: {wall:.1f} s (ComfyUI's own {comfy:.1f} s; a first run loads the weights), {peak},"
    text += f" {len(outputs)} output(s) of {size / 1e6:.1f} MB: {files}"
    acc.line("5/5 workflow", "ok", text)
    acc.row(label, "ok", f"{wall:.1f} s, {peak}, {size / 1e6:.1f} MB")
    acc.figures["workflows"].append(
        {
            "name": path.name,
            "seconds": rounded(wall, 2),
            "comfyui_execution_s": rounded(comfy, 2),
            "peak_vram_gb": rounded(vram.peak / GIB, 2) if vram.available else None,
            "output_bytes": size,
        }
    )


class Progress:
    """Logs a long run's progress every tenth, so the person at the terminal sees it move."""

    def __init__(self, name: str) -> None:
        self.name, self.shown = name, -1

    def __call__(self, percent: float, step: int | None, steps: int | None, message: str) -> None:
        if int(percent // 10) > self.shown:
            self.shown = int(percent // 10)
            log.info("%s: %.0f%% %s", self.name, percent, message)


# --- the command ---------------------------------------------------------------------------------


def run_accept(args: argparse.Namespace) -> int:
    from gpu_worker.backends.comfyui import ComfyUIBackend
    from gpu_worker.comfy import ComfyClient
    from gpu_worker.jobs import backend_options

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-worker-accept-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.comfyui_url = args.comfyui_url.rstrip("/")
    name = f"accept-{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    host = Host(args, workdir, name, first_id=random.randrange(10**6, 10**9))
    acc = Acceptance()
    began = time.monotonic()
    print(
        f"gpu-worker accept on {socket.gethostname()}: ComfyUI {args.comfyui_url}; files in {workdir}",
        flush=True,
    )
    # The worker's own backend settings, under a client id of their own.
    backend = ComfyUIBackend(
        **backend_options("comfyui", comfyui_url=args.comfyui_url, worker_name=f"{name}-runs")
    )
    client = ComfyClient(args.comfyui_url)
    try:
        if args.comfyui_command:
            launch_alone(acc, host)
        step_doctor(acc, host)
        step_synthetic(acc, host)
        step_runs(acc, host, backend, client)
        if system_stats(args.comfyui_url) is None:
            acc.line("4/5 cancel", "PROBLEM", f"no ComfyUI answers at {args.comfyui_url}")
            acc.row("4 cancel -> GPU free", "PROBLEM", "no ComfyUI")
            if args.workflow:
                acc.line("5/5 workflow", "PROBLEM", f"no ComfyUI answers at {args.comfyui_url}")
                acc.row("5 workflow", "PROBLEM", "no ComfyUI")
            else:
                step_workflows(acc, host, backend, client)  # says it is skipped
        else:
            step_cancels(acc, host, backend, client)
            step_workflows(acc, host, backend, client)
    finally:
        client.close()
        if host.worker is not None:
            host.worker.process.stop()
        if host.comfyui is not None:
            host.comfyui.stop()
    acc.figures["accept_seconds"] = rounded(time.monotonic() - began, 1)
    acc.table()
    acc.json_line()
    return 1 if acc.problems else 0
