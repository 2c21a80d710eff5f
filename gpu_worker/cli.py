"""``gpu-worker``: run an RQ worker for generations, check a GPU host, or render one synthetic video."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_worker import protocol

if TYPE_CHECKING:
    from gpu_worker.heartbeat import Heartbeat

log = logging.getLogger("gpu_worker")


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {value!r}") from None


def _at_least(
    minimum: float, convert: Callable[[str], float] = float, maximum: float = math.inf
) -> Callable[[str], float]:
    """An argparse type: a finite number (whole when ``convert`` is int) within the bounds."""
    kind = "a whole number" if convert is int else "a number"

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            bounds = f"at least {minimum:g}" if maximum == math.inf else f"from {minimum:g} to {maximum:g}"
            raise argparse.ArgumentTypeError(f"expected {kind} {bounds}, got {text!r}")
        return value

    return parse


def _provider(text: str) -> str:
    from gpu_worker.heartbeat import PROVIDERS

    if text not in PROVIDERS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PROVIDERS)}; got {text!r}")
    return text


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


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
    run.add_argument(
        "--verify-key",
        default=os.environ.get("JOB_VERIFY_KEY", ""),
        help="the conductor's public key: jobs not signed with its private key are refused "
        "(env JOB_VERIFY_KEY; required)",
    )
    _identity_arguments(run)
    _serverless_arguments(run)
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

    from gpu_worker.accept import add_arguments as accept_arguments

    accept_arguments(
        commands.add_parser(
            "accept",
            help="accept a new GPU host: doctor, the synthetic backend, ComfyUI driven by the worker, "
            "cancels, a real workflow; a table and a JSON line; exit 1 on a problem",
        )
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


def _identity_arguments(run: argparse.ArgumentParser) -> None:
    # What the heartbeat says about this worker; string defaults go through `type` too, so a
    # bad environment variable is refused just like a bad flag.
    run.add_argument(
        "--provider",
        type=_provider,
        default=os.environ.get("GPU_WORKER_PROVIDER") or "local",
        help="verda-instance, verda-serverless, runpod-serverless, local or other "
        "(env GPU_WORKER_PROVIDER; default: %(default)s)",
    )
    run.add_argument(
        "--price-per-hour",
        type=_at_least(0),
        default=os.environ.get("GPU_WORKER_PRICE_PER_HOUR") or "0",
        help="what this GPU costs per hour (env GPU_WORKER_PRICE_PER_HOUR; default: %(default)s)",
    )
    run.add_argument(
        "--billing-seconds",
        type=_at_least(1, int),
        default=os.environ.get("GPU_WORKER_BILLING_SECONDS") or "1",
        help="billing granularity: online time is rounded up to a multiple of it "
        "(env GPU_WORKER_BILLING_SECONDS; default: %(default)s)",
    )
    run.add_argument(
        "--templates",
        type=_names,
        default=os.environ.get("GPU_WORKER_TEMPLATES", ""),
        help="comma-separated slugs of the templates this worker can run; empty: not stated "
        "(env GPU_WORKER_TEMPLATES)",
    )


def _serverless_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--idle-exit-seconds",
        type=_at_least(1),
        default=os.environ.get("GPU_WORKER_IDLE_EXIT_S") or None,
        help="exit (status 0) after this long ready with no job; warming up does not count "
        "(env GPU_WORKER_IDLE_EXIT_S; default: never)",
    )
    run.add_argument(
        "--max-jobs",
        type=_at_least(1, int),
        default=os.environ.get("GPU_WORKER_MAX_JOBS") or None,
        help="exit (status 0) after this many jobs (env GPU_WORKER_MAX_JOBS; default: no limit)",
    )
    run.add_argument(
        "--health-port",
        type=_at_least(1, int, 65535),
        default=os.environ.get("GPU_WORKER_HEALTH_PORT") or None,
        help="serve GET /health on this port: 200 once the backend is ready, 503 before "
        "(env GPU_WORKER_HEALTH_PORT; default: off)",
    )


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
    if args.command == "accept":
        from gpu_worker.accept import run_accept

        return run_accept(args)
    return render_one(args)


def run_worker(args: argparse.Namespace) -> int:
    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    from gpu_worker import host, signing
    from gpu_worker.backends import get_backend
    from gpu_worker.events import EventEmitter
    from gpu_worker.health import HealthServer
    from gpu_worker.heartbeat import BUSY, DRAINING, IDLE, WARMING, Heartbeat, identity
    from gpu_worker.horse import HorseWorker, Phase, RenderLock
    from gpu_worker.jobs import WorkerConfig, backend_options, configure, upload_options
    from gpu_worker.warmup import Gate, Launcher

    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    if not queues:
        raise SystemExit("--queues names no queue")
    if not args.verify_key:
        raise SystemExit("JOB_VERIFY_KEY (or --verify-key) is required: the public key the web app shows")
    try:
        verify_key = signing.public_key_from_text(args.verify_key)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    # An enrolled host writes only under its own name (see gpu_worker.host).
    credential = host.credential_from_url(args.redis_url)
    args.name = host.worker_name(args.name, credential)
    args.events_stream = host.events_stream(args.events_stream, credential)
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
    gate = Gate(backend, launcher=launcher)
    worker: HorseWorker | None = None
    phase = Phase()

    def probe() -> tuple[str, str | None]:
        if worker is None:
            return WARMING, None
        job_id = worker.job_id or worker.get_current_job_id()
        if worker._stop_requested:
            return DRAINING, job_id
        if job_id:
            return (phase.get() or BUSY), job_id
        if worker.orphan is not None:
            return BUSY, None  # an orphaned render of our name still holds the GPU
        return (WARMING if gate.warming else IDLE), None

    def stop_now(signum: int, frame: object) -> None:
        raise SystemExit(0)  # no job taken yet: clean up (the heartbeat says goodbye) and go

    # Until the work loop installs RQ's handlers (the drain), a SIGTERM while warming ends it at once.
    signal.signal(signal.SIGTERM, stop_now)
    info = identity(
        provider=args.provider,
        price_per_hour=args.price_per_hour,
        billing_seconds=args.billing_seconds,
        templates=args.templates,
    )
    # Beating from the start, so a cold start shows as warming while the backend loads. On a client
    # of its own: a work-horse forked while the beating thread held the worker's connection-pool
    # lock would hang on that lock when it first uses Redis (redis-py resets the pool under it).
    beats = Redis.from_url(args.redis_url)
    heartbeat = Heartbeat(
        beats, name=args.name, queues=queues, probe=probe, info=info, workers_set=host.workers_set(credential)
    )
    heartbeat.start()
    threading.Thread(target=_report_gpu, args=(heartbeat,), name="gpu-info", daemon=True).start()

    def health_status() -> tuple[bool, str]:
        state, _ = probe()
        return state != WARMING, state  # ready: taking jobs, or running one

    health = HealthServer(health_status, port=args.health_port).start() if args.health_port else None
    try:
        # The gate's first check() also imports the backend's heavy libraries (torch, av) here in
        # the parent, so each forked work-horse starts with them loaded instead of paying seconds
        # per job. Anything but "not ready yet" (a missing library...) stops the worker here.
        gate.ready()
        configure(
            WorkerConfig(
                redis_url=args.redis_url,
                backend=backend,
                worker_name=args.name,
                events_stream=args.events_stream,
                upload_options=upload_options(credential),
                phase=phase,
            )
        )
        connection = Redis.from_url(args.redis_url)
        worker = HorseWorker(
            [Queue(name, connection=connection, serializer=JSONSerializer) for name in queues],
            # RQ's registration of a killed worker lingers for minutes and blocks its name; ours is
            # the heartbeat's `args.name`, so RQ gets a per-process one.
            name=f"{args.name}.{os.getpid()}",
            connection=connection,
            serializer=JSONSerializer,
            # The description holds the signed upload URL and the whole workflow: not for logs.
            log_job_description=False,
        )
        worker.gate, worker.idle_exit = gate, args.idle_exit_seconds
        # One render per name; the heartbeat claims each job at once and says what was delivered.
        worker.render_lock, worker.phase = RenderLock(args.name), phase
        worker.on_job_change = heartbeat.kick
        worker.on_delivered = lambda job_id: heartbeat.update({"delivered": job_id})
        worker.verify_key = verify_key
        worker.events = EventEmitter(connection, stream=args.events_stream, worker=args.name)
        log.info(
            "gpu-worker %s: backend %s, queues %s, events %s, provider %s at %s/h",
            args.name,
            backend.name,
            ",".join(queues),
            args.events_stream,
            args.provider,
            info["price_per_hour"],
        )
        worker.work(burst=args.burst, logging_level="WARNING", max_jobs=args.max_jobs)
        if worker.idle_exited:
            pass  # the worker said so already
        elif args.max_jobs is not None and worker.jobs_done >= args.max_jobs:
            log.info("reached --max-jobs (%d jobs): exiting", worker.jobs_done)
        elif worker._stop_requested:
            log.info("drained: exiting")
    finally:
        heartbeat.stop()
        if health is not None:
            health.stop()
        if launcher is not None:
            launcher.stop()
    return 0


def _report_gpu(heartbeat: Heartbeat) -> None:
    # Seconds of torch import in a child process: off the startup path, in the beats once known.
    from gpu_worker.heartbeat import gpu_info

    info = gpu_info()
    log.info("GPU: %s%s", info["gpu"], f" ({info['vram_gb']} GiB)" if info["vram_gb"] else "")
    heartbeat.update(info)


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
