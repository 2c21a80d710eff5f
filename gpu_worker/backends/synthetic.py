"""A backend that renders a short, real video with torch: no ComfyUI, no model weights.

It exercises everything around generation (GPU time, per-frame progress, encoding, upload)
so the workshop can be rehearsed end to end on any machine. The picture is a drifting colour
gradient with a few soft blobs, all drawn from a generator seeded by (prompt, seed): the same
prompt and seed always give the same video.

torch and av are imported inside functions so this module (and its parameter checks) can be
imported where neither is installed, e.g. by the web app's tests.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_worker.backends import (
    JobCancelled,
    JobContext,
    JobError,
    JobSpec,
    Output,
    ProgressCallback,
    timeout_error,
)

if TYPE_CHECKING:
    import torch

MAX_FRAMES = 1200
MAX_SIDE = 2048
MAX_FPS = 120
MIN_SIDE = 16
# Rendering gets this share of the progress bar; the rest is for encoding and delivery.
RENDER_PERCENT = 90.0
ENCODED_PERCENT = 95.0
# Preview frames, as the ComfyUI backend forwards its sampler's: at most one per interval (the
# job's PreviewForwarder throttles too; this keeps the encoding off the frames in between).
PREVIEW_INTERVAL_S = 0.5
PREVIEW_SIDE = 320


@dataclass(frozen=True)
class Codec:
    name: str
    format: str
    extension: str
    content_type: str
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


# In order of preference. Chromium plays H.264 in MP4 (yuv420p) and VP9/VP8 in WebM; faststart
# puts the index first so the browser can start playing before the whole file has arrived.
CODECS = (
    Codec(
        "libx264", "mp4", ".mp4", "video/mp4", {"preset": "veryfast", "crf": "20"}, {"movflags": "+faststart"}
    ),
    Codec("libopenh264", "mp4", ".mp4", "video/mp4", {}, {"movflags": "+faststart"}),
    Codec(
        "libvpx-vp9",
        "webm",
        ".webm",
        "video/webm",
        {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"},
    ),
    Codec(
        "libvpx",
        "webm",
        ".webm",
        "video/webm",
        {"crf": "10", "b": "2M", "deadline": "realtime", "cpu-used": "8"},
    ),
)


def pick_codec(candidates: Sequence[Codec] = CODECS) -> Codec:
    """The first codec this PyAV build can encode with; RuntimeError when there is none."""
    import av

    for codec in candidates:
        try:
            av.codec.Codec(codec.name, "w")
        except Exception:  # PyAV raises UnknownCodecError (a ValueError) or FFmpegError by version
            continue
        return codec
    raise RuntimeError(f"PyAV has none of the encoders {', '.join(c.name for c in candidates)}")


@dataclass(frozen=True)
class RenderParams:
    prompt: str
    seed: int
    frames: int
    width: int
    height: int
    fps: int = 24


@dataclass(frozen=True)
class RenderResult:
    path: Path
    codec: str
    content_type: str
    frames: int
    device: str
    seconds: float


def _int_param(params: dict[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None:
        raise JobError(f"Missing parameter: {key}.")
    # bool is an int in Python, but true is not a frame count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobError(f"Parameter {key} must be a whole number, got {value!r}.")
    if not low <= value <= high:
        raise JobError(f"Parameter {key} must be between {low} and {high}, got {value}.")
    return value


def parse_params(params: dict[str, Any]) -> RenderParams:
    """Check the user-facing parameters; every problem is a non-retriable ``JobError``."""
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise JobError("The prompt must not be empty.")
    seed = _int_param(params, "seed", -(2**63), 2**63 - 1)
    frames = _int_param(params, "frames", 1, MAX_FRAMES)
    width = _int_param(params, "width", MIN_SIDE, MAX_SIDE)
    height = _int_param(params, "height", MIN_SIDE, MAX_SIDE)
    fps = _int_param(params, "fps", 1, MAX_FPS, default=24)
    # yuv420p stores colour at half resolution, so odd sizes cannot be encoded.
    for key, value in (("width", width), ("height", height)):
        if value % 2:
            raise JobError(f"Parameter {key} must be even, got {value}.")
    return RenderParams(prompt=prompt, seed=seed, frames=frames, width=width, height=height, fps=fps)


def generator_seed(prompt: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


class _Scene:
    """Everything random about a video, drawn once; ``frame(t)`` is then a pure function of time."""

    def __init__(self, params: RenderParams, device: str) -> None:
        import torch

        # Draw on the CPU generator so the scene is the same whichever device renders it.
        gen = torch.Generator(device="cpu").manual_seed(generator_seed(params.prompt, params.seed))

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=gen)

        count = 3 + int(torch.randint(0, 4, (1,), generator=gen))
        aspect = params.width / params.height
        self.torch = torch
        self.device = device
        self.bg = rand(2, 3).to(device) * 0.6 + 0.1
        angle = float(rand(1)) * 2 * math.pi
        self.bg_drift = 0.05 + float(rand(1)) * 0.15
        self.colors = (rand(count, 3) * 0.8 + 0.2).to(device)
        self.radius = (0.08 + rand(count) * 0.14).to(device)
        self.strength = (0.55 + rand(count) * 0.4).to(device)
        self.center = torch.stack([rand(count) * aspect, rand(count)], dim=1).to(device)
        self.amp = (0.08 + rand(count, 2) * 0.3).to(device)
        self.freq = (0.1 + rand(count, 2) * 0.4).to(device)
        self.phase = (rand(count, 2) * 2 * math.pi).to(device)

        ys = torch.linspace(0, 1, params.height, device=device)
        xs = torch.linspace(0, aspect, params.width, device=device)
        self.yy, self.xx = torch.meshgrid(ys, xs, indexing="ij")
        self.projection = (self.xx * math.cos(angle) + self.yy * math.sin(angle)) / max(aspect, 1.0)

    def frame(self, t: float) -> torch.Tensor:
        """An (H, W, 3) uint8 frame on the CPU."""
        torch = self.torch
        mix = 0.5 + 0.5 * torch.sin(math.pi * (self.projection + self.bg_drift * t))
        image = self.bg[0] + (self.bg[1] - self.bg[0]) * mix.unsqueeze(-1)
        centers = self.center + self.amp * torch.sin(2 * math.pi * self.freq * t + self.phase)
        dx = self.xx.unsqueeze(0) - centers[:, 0, None, None]
        dy = self.yy.unsqueeze(0) - centers[:, 1, None, None]
        alpha = self.strength[:, None, None] * torch.exp(
            -(dx * dx + dy * dy) / (2 * self.radius[:, None, None] ** 2)
        )
        for k in range(alpha.shape[0]):
            a = alpha[k].unsqueeze(-1)
            image = image * (1 - a) + self.colors[k] * a
        return (image * 255).round_().clamp_(0, 255).to(torch.uint8).cpu()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def preview_jpeg(frame: Any, side: int = PREVIEW_SIDE) -> bytes:
    """A small JPEG of an ``av.VideoFrame``: what the job card shows while the clip renders."""
    from fractions import Fraction

    import av

    scale = min(1.0, side / max(frame.width, frame.height))
    width, height = max(2, round(frame.width * scale) // 2 * 2), max(2, round(frame.height * scale) // 2 * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = 6
    return b"".join(bytes(packet) for packet in [*encoder.encode(small), *encoder.encode(None)])


def render(
    params: RenderParams,
    path: Path,
    *,
    progress: ProgressCallback | None = None,
    frame_delay: float = 0.0,
    device: str | None = None,
    codec: Codec | None = None,
    check: Callable[[], None] | None = None,
    preview: Callable[[bytes, str], None] | None = None,
) -> RenderResult:
    """Render and encode ``params.frames`` frames to ``path``, reporting progress per frame and,
    with ``preview``, the latest frame as a small JPEG at most every PREVIEW_INTERVAL_S.

    ``check`` runs before each frame and may raise to stop (a cancel, a deadline)."""
    import av
    import torch
    from av.video.reformatter import Colorspace

    started = time.monotonic()
    codec = codec or pick_codec()
    device = device or default_device()
    report = progress or (lambda percent, step, steps, message: None)
    last_preview = float("-inf")
    try:
        scene = _Scene(params, device)
        with av.open(str(path), "w", format=codec.format, options=codec.container_options) as container:
            stream = container.add_stream(codec.name, rate=params.fps)
            stream.width, stream.height = params.width, params.height
            stream.pix_fmt = "yuv420p"
            stream.options = codec.options
            # Tag what we convert to, so players do not guess the colour matrix.
            cc = stream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
            cc.color_range = 1  # limited ("TV") range, what swscale produces
            for i in range(params.frames):
                if check is not None:
                    check()
                rgb = av.VideoFrame.from_ndarray(scene.frame(i / params.fps).numpy(), format="rgb24")
                frame = rgb.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709)
                frame.pts = i
                container.mux(stream.encode(frame))
                if preview is not None and time.monotonic() - last_preview >= PREVIEW_INTERVAL_S:
                    last_preview = time.monotonic()
                    preview(preview_jpeg(rgb), "image/jpeg")
                if frame_delay:
                    time.sleep(frame_delay)
                percent = RENDER_PERCENT * (i + 1) / params.frames
                report(percent, i + 1, params.frames, f"Rendering frame {i + 1}/{params.frames}")
            container.mux(stream.encode(None))  # flush the frames the encoder still holds
    except torch.cuda.OutOfMemoryError as exc:
        raise JobError(
            "The GPU ran out of memory; try fewer frames or a smaller size.", str(exc), True
        ) from exc
    report(ENCODED_PERCENT, params.frames, params.frames, "Video encoded")
    return RenderResult(
        path, codec.name, codec.content_type, params.frames, device, time.monotonic() - started
    )


def output_filename(job: JobSpec, codec: Codec) -> str:
    # Unique per generation and attempt, so a late upload from an old attempt never overwrites.
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", job.template).strip("-") or "video"
    return f"{slug}-g{job.generation_id}-a{job.attempt}{codec.extension}"


class SyntheticBackend:
    name = "synthetic"

    def __init__(self, *, frame_delay: float = 0.0, device: str | None = None) -> None:
        if frame_delay < 0:
            raise ValueError("frame_delay must not be negative")
        self.frame_delay = frame_delay
        self.device = device

    def check(self) -> None:
        # Importing here also warms the CLI's parent process, so RQ's forked work-horses start
        # with torch and av loaded. CUDA is deliberately not touched: a CUDA context created
        # before fork() is unusable in the child, so the device is chosen inside each job.
        import torch  # noqa: F401

        pick_codec()

    def run(self, job: JobSpec, ctx: JobContext) -> list[Output]:
        params = parse_params(job.params)
        codec = pick_codec()
        filename = output_filename(job, codec)
        path = ctx.workdir / filename

        def check() -> None:
            if ctx.cancelled():
                raise JobCancelled()
            if ctx.expired():
                raise timeout_error(ctx.timeout)

        render(
            params,
            path,
            progress=ctx.progress,
            frame_delay=self.frame_delay,
            device=self.device,
            codec=codec,
            check=check,
            preview=ctx.preview,
        )
        return [Output(path=path, filename=filename, content_type=codec.content_type)]
