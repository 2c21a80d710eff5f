"""``gpu-worker``: run an RQ worker for generations, check a GPU host, or render one synthetic video."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gpu_worker import protocol

log = logging.getLogger("gpu_worker")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from gpu_worker.backends import backend_names
    from gpu_worker.jobs import DEFAULT_BACKEND, DEFAULT_REDIS_URL, default_worker_name

    parser = argparse.ArgumentParser(prog="gpu-worker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="work generation jobs from Redis until stopped (SIGTERM: finish, then quit)"
    )
    run.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    run.add_argument(
        "--queues",
        default=os.environ.get("GPU_WORKER_QUEUES", "video,image"),
        help="comma-separated, highest priority first (default: %(default)s)",
    )
    run.add_argument(
        "--backend", default=os.environ.get("GPU_WORKER_BACKEND", DEFAULT_BACKEND), choices=backend_names()
    )
    run.add_argument(
        "--name", default=os.environ.get("GPU_WORKER_NAME") or default_worker_name(), help="unique per worker"
    )
    run.add_argument("--events-stream", default=os.environ.get("EVENTS_STREAM", protocol.EVENTS_STREAM))
    run.add_argument(
        "--synthetic-frame-delay",
        type=float,
        default=_env_float("SYNTHETIC_FRAME_DELAY", 0.0),
        help="seconds slept per frame by the synthetic backend, to mimic GPU time",
    )
    run.add_argument("--burst", action="store_true", help="quit when the queues are empty")
    _comfyui_arguments(run)
    run.add_argument(
        "--comfyui-command",
        default=os.environ.get("COMFYUI_COMMAND", ""),
        help="start ComfyUI with this command when it is not answering (and again if it exits)",
    )
    run.add_argument(
        "--comfyui-dead-after",
        type=float,
        default=_env_float("COMFYUI_DEAD_AFTER", 15.0),
        help="seconds ComfyUI may stay unreachable mid-job before the job fails as retriable",
    )
    run.add_argument(
        "--comfyui-log",
        type=Path,
        default=Path(os.environ["COMFYUI_LOG"]) if os.environ.get("COMFYUI_LOG") else None,
        help="append the output of --comfyui-command here (default: discarded)",
    )

    doctor = commands.add_parser(
        "doctor", help="check this GPU host: GPU, Redis, ComfyUI, node classes, upload; exit 1 on a problem"
    )
    doctor.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    _comfyui_arguments(doctor)
    doctor.add_argument(
        "--workflow",
        type=Path,
        action="append",
        default=[],
        help="a workflow (API or UI format) whose node classes ComfyUI must have; repeatable "
        "(the shipped model-free template is always checked)",
    )
    doctor.add_argument(
        "--upload-url", help="a signed upload URL of the web app: PUT a tiny test video to it"
    )
    doctor.add_argument(
        "--allow-cpu", action="store_true", help="no CUDA GPU is a warning, not a problem (tests, rehearsals)"
    )

    render = commands.add_parser(
        "render", help="render one synthetic video to a file and print a JSON summary"
    )
    render.add_argument("--prompt", required=True)
    render.add_argument("--seed", type=int, required=True)
    render.add_argument("--frames", type=int, required=True)
    render.add_argument("--width", type=int, required=True)
    render.add_argument("--height", type=int, required=True)
    render.add_argument("--fps", type=int, default=24)
    render.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    render.add_argument("--out", type=Path, required=True)
    return parser


def _comfyui_arguments(parser: argparse.ArgumentParser) -> None:
    from gpu_worker.comfy import DEFAULT_URL

    parser.add_argument(
        "--comfyui-url",
        default=os.environ.get("COMFYUI_URL", DEFAULT_URL),
        help="the ComfyUI server of this worker (default: %(default)s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # httpx logs every request at INFO with its URL, and upload URLs are signed secrets.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "run":
        return run_worker(args)
    if args.command == "doctor":
        from gpu_worker.doctor import run_doctor

        return run_doctor(args)
    return render_one(args)


def run_worker(args: argparse.Namespace) -> int:
    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    from gpu_worker.backends import get_backend
    from gpu_worker.jobs import WorkerConfig, backend_options, configure
    from gpu_worker.warmup import Gate, GatedWorker, Launcher

    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    if not queues:
        raise SystemExit("--queues names no queue")
    options = backend_options(
        args.backend,
        synthetic_frame_delay=args.synthetic_frame_delay,
        comfyui_url=args.comfyui_url,
        worker_name=args.name,
    )
    if args.backend == "comfyui":
        options["dead_after"] = args.comfyui_dead_after
    backend = get_backend(args.backend, **options)
    launcher = None
    if args.comfyui_command and args.backend == "comfyui":
        launcher = Launcher(args.comfyui_command, args.comfyui_log)
    # The gate's first check() also imports the backend's heavy libraries (torch, av) here in the
    # parent, so each forked work-horse starts with them loaded instead of paying seconds per job.
    gate = Gate(backend, launcher=launcher)
    gate.ready()  # anything but "not ready yet" (a missing library...) stops the worker here
    configure(
        WorkerConfig(
            redis_url=args.redis_url, backend=backend, worker_name=args.name, events_stream=args.events_stream
        )
    )

    connection = Redis.from_url(args.redis_url)
    worker = GatedWorker(
        [Queue(name, connection=connection, serializer=JSONSerializer) for name in queues],
        # RQ's registration of a killed worker lingers for minutes and blocks its name; ours is
        # the heartbeat's `args.name`, so RQ gets a per-process one.
        name=f"{args.name}.{os.getpid()}",
        connection=connection,
        serializer=JSONSerializer,
        # The description holds the signed upload URL and the whole workflow: not for logs.
        log_job_description=False,
    )
    worker.gate = gate
    from gpu_worker.heartbeat import BUSY, DRAINING, IDLE, WARMING, Heartbeat

    def probe() -> tuple[str, str | None]:
        job_id = worker.get_current_job_id()
        if getattr(worker, "_stop_requested", False):
            return DRAINING, job_id
        if job_id:
            return BUSY, job_id
        return (WARMING if gate.warming else IDLE), None

    heartbeat = Heartbeat(connection, name=args.name, queues=queues, probe=probe)
    heartbeat.start()
    log.info(
        "gpu-worker %s: backend %s, queues %s, events %s",
        args.name,
        backend.name,
        ",".join(queues),
        args.events_stream,
    )
    try:
        worker.work(burst=args.burst, logging_level="WARNING")
    finally:
        heartbeat.stop()
        if launcher is not None:
            launcher.stop()
    return 0


def render_one(args: argparse.Namespace) -> int:
    from gpu_worker.backends import JobError
    from gpu_worker.backends.synthetic import parse_params, render

    raw = {k: getattr(args, k) for k in ("prompt", "seed", "frames", "width", "height", "fps")}
    try:
        params = parse_params(raw)
        result = render(params, args.out, device=args.device)
    except JobError as exc:
        print(f"gpu-worker render: {exc.message}", file=sys.stderr)
        return 2
    summary = {
        "path": str(result.path),
        "codec": result.codec,
        "content_type": result.content_type,
        "frames": result.frames,
        "device": result.device,
        "seconds": round(result.seconds, 3),
    }
    print(json.dumps(summary))
    return 0
