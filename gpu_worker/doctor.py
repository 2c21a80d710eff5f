"""``gpu-worker doctor``: is this host ready to take generations?

One line per check: ``ok``, ``warning`` or ``PROBLEM``, and for a problem what to do about it.
Exit status 1 when there is any problem. torch is imported only here, lazily.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker import workflows

GIB = 1024**3
# Editor-only nodes of the UI format: ComfyUI never executes them.
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def ok(self, what: str, text: str) -> None:
        self._line("ok", what, text)

    def warning(self, what: str, text: str) -> None:
        self._line("warning", what, text)

    def problem(self, what: str, text: str) -> None:
        self.problems += 1
        self._line("PROBLEM", what, text)

    def _line(self, level: str, what: str, text: str) -> None:
        line = f"{level:<8} {what}: {text}"
        self.lines.append(line)
        print(line, flush=True)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def check_gpu(report: Report, allow_cpu: bool) -> None:
    try:
        import torch
    except ImportError as exc:
        report.problem("GPU", f"torch is not installed ({exc}): install the worker (deploy/bootstrap.py)")
        return
    if not torch.cuda.is_available():
        text = f"torch {torch.__version__} sees no CUDA device"
        if allow_cpu:
            report.warning("GPU", f"{text}; running on the CPU (allowed by --allow-cpu)")
        else:
            report.problem(
                "GPU",
                f"{text}: check the NVIDIA driver (nvidia-smi) and install a CUDA build of torch "
                f"(torch.version.cuda is {torch.version.cuda}); pass --allow-cpu for a CPU rehearsal",
            )
        return
    versions = f"torch {torch.__version__}, CUDA {torch.version.cuda}, driver {nvidia_driver()}"
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        report.ok(f"GPU {index}", f"{name}, {_gib(total)} total, {_gib(free)} free ({versions})")


def nvidia_driver() -> str:
    """The NVIDIA driver's version, as nvidia-smi says (torch knows only the CUDA version); "unknown"."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def check_redis(report: Report, url: str) -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        info = client.info("server")
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "?")
    except RedisError as exc:
        report.problem(
            "Redis", f"{_redact(url)} is not reachable ({exc}): start Redis or set REDIS_URL / --redis-url"
        )
        return
    finally:
        client.close()
    report.ok("Redis", f"{_redact(url)} answers (Redis {info.get('redis_version', '?')}, policy {policy})")


def workflow_classes(workflow: dict[str, Any]) -> set[str]:
    """The node classes a workflow needs, in API format or in the editor's UI format."""
    if isinstance(workflow.get("nodes"), list):
        subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
        ids = {subgraph.get("id") for subgraph in subgraphs}
        nodes = list(workflow["nodes"]) + [
            node for subgraph in subgraphs for node in subgraph.get("nodes") or []
        ]
        return {
            str(node["type"])
            for node in nodes
            if node.get("type") and node["type"] not in ids and node["type"] not in FRONTEND_ONLY
        }
    return {
        str(node["class_type"])
        for node in workflow.values()
        if isinstance(node, dict) and "class_type" in node
    }


def check_comfyui(report: Report, url: str, workflow_files: list[Path], allow_cpu: bool) -> None:
    from gpu_worker.comfy import PROBE_TIMEOUT, ComfyClient, ComfyError

    with ComfyClient(url) as client:
        try:
            stats = client.system_stats(timeout=PROBE_TIMEOUT)
        except ComfyError as exc:
            report.problem(
                "ComfyUI",
                f"{url} is not answering ({exc}): start ComfyUI, or set COMFYUI_URL / --comfyui-url",
            )
            return
        stats = stats if isinstance(stats, dict) else {}
        system, devices = stats.get("system") or {}, stats.get("devices") or []
        described = ", ".join(
            f"{d.get('name')} ({d.get('type')}, {_gib(d.get('vram_total') or 0)} total, "
            f"{_gib(d.get('vram_free') or 0)} free)"
            for d in devices
        )
        report.ok("ComfyUI", f"{system.get('comfyui_version', '?')} at {url}; devices: {described or 'none'}")
        if devices and all(d.get("type") == "cpu" for d in devices):
            text = "ComfyUI runs on the CPU only"
            if allow_cpu:
                report.warning("ComfyUI", f"{text} (allowed by --allow-cpu)")
            else:
                report.problem("ComfyUI", f"{text}: start it without --cpu on a host whose GPU torch can see")
        try:
            installed = set(client.object_info())
        except ComfyError as exc:
            report.problem("node classes", f"GET /object_info failed ({exc}): check the ComfyUI log")
            return
    for path in [workflows.MODEL_FREE_VIDEO, *workflow_files]:
        try:
            needed = workflow_classes(json.loads(path.read_text()))
        except (OSError, ValueError, AttributeError) as exc:
            report.problem("node classes", f"cannot read {path} ({exc}): pass a workflow JSON file")
            continue
        missing = sorted(needed - installed)
        if missing:
            report.problem(
                "node classes",
                f"ComfyUI lacks {', '.join(missing)} needed by {path.name}: install the custom nodes (or the "
                "newer ComfyUI) that provide them, then restart ComfyUI",
            )
        else:
            report.ok("node classes", f"all {len(needed)} classes of {path.name} are installed")


def _tiny_video(path: Path) -> str:
    """Two black 16x16 frames, encoded the way the synthetic backend encodes; returns the content type."""
    import av
    import numpy

    from gpu_worker.backends.synthetic import pick_codec

    codec = pick_codec()
    with av.open(str(path), "w", format=codec.format) as container:
        stream = container.add_stream(codec.name, rate=2)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(numpy.zeros((16, 16, 3), dtype=numpy.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return codec.content_type


def check_upload(report: Report, upload_url: str, worker: str) -> None:
    from gpu_worker.backends import JobError
    from gpu_worker.upload import upload_file

    with tempfile.TemporaryDirectory(prefix="gpu-worker-doctor-") as tmp:
        path = Path(tmp) / "doctor-check.mp4"
        content_type = _tiny_video(path)
        try:
            upload_file(upload_url, path, "doctor-check" + path.suffix, content_type, worker, attempts=2)
        except JobError as exc:
            report.problem(
                "upload",
                f"{exc.detail or exc.message}: check PUBLIC_BASE_URL on the web app and that this host can "
                "reach it, and use a fresh upload URL (they expire)",
            )
            return
    host = urllib.parse.urlsplit(upload_url).netloc
    report.ok("upload", f"the web app at {host} accepted a test upload")


def run_doctor(args: argparse.Namespace) -> int:
    from gpu_worker.jobs import default_worker_name

    report = Report()
    check_gpu(report, args.allow_cpu)
    check_redis(report, args.redis_url)
    check_comfyui(report, args.comfyui_url, list(args.workflow), args.allow_cpu)
    if args.upload_url:
        check_upload(report, args.upload_url, f"doctor-{default_worker_name()}")
    print(f"{report.problems} problem(s)" if report.problems else "all checks passed", flush=True)
    return 1 if report.problems else 0
