from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from gpu_worker.backends import JobError, JobSpec
from gpu_worker.backends.synthetic import CODECS, output_filename, parse_params

from .conftest import ROOT

VALID = {"prompt": "a lighthouse at dusk", "seed": 7, "frames": 9, "width": 64, "height": 48, "fps": 12}


@dataclass
class Rendered:
    summary: dict[str, Any]
    frames: list[np.ndarray]
    codec: str
    size: tuple[int, int]
    path: Path


def mp4_boxes(path: Path) -> list[str]:
    """The top-level MP4 boxes, in file order."""
    data, boxes, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        boxes.append(data[at + 4 : at + 8].decode("latin-1"))
        at += size if size >= 8 else len(data)
    return boxes


def decode(path: Path) -> tuple[list[np.ndarray], str, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream.codec_context.name, (stream.width, stream.height)


@pytest.fixture(scope="module")
def renders(
    worker_python: str, worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Rendered]:
    """Three renders through the worker venv's CLI, run side by side: each pays torch's import."""
    out = tmp_path_factory.mktemp("renders")
    jobs = {"first": ("7", 9), "again": ("7", 9), "other_seed": ("8", 3)}
    procs = {}
    for name, (seed, frames) in jobs.items():
        args = ["--prompt", VALID["prompt"], "--seed", seed, "--frames", str(frames), "--width", "64"]
        args += ["--height", "48", "--fps", "12", "--out", str(out / f"{name}.mp4")]
        procs[name] = subprocess.Popen(
            [worker_python, "-m", "gpu_worker", "render", *args],
            cwd=ROOT,
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    rendered = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr.decode()
        summary = json.loads(stdout)
        path = Path(summary["path"])
        rendered[name] = Rendered(summary, *decode(path), path)
    return rendered


def test_it_accepts_valid_params() -> None:
    params = parse_params(VALID)
    assert (params.prompt, params.seed, params.frames, params.width, params.height, params.fps) == (
        "a lighthouse at dusk",
        7,
        9,
        64,
        48,
        12,
    )
    assert parse_params({k: v for k, v in VALID.items() if k != "fps"}).fps == 24


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": "   "}, "The prompt must not be empty."),
        ({"width": 63}, "Parameter width must be even, got 63."),
        ({"height": 8}, "Parameter height must be between 16 and"),
        ({"frames": 0}, "Parameter frames must be between 1 and"),
        ({"frames": "9"}, "Parameter frames must be a whole number, got '9'."),
        ({"seed": True}, "Parameter seed must be a whole number, got True."),
        ({"seed": None}, "Missing parameter: seed."),
    ],
)
def test_it_rejects_invalid_params(change: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError) as caught:
        parse_params({**VALID, **change})
    assert caught.value.message.startswith(message)
    assert caught.value.retriable is False


def test_it_names_outputs_per_generation_and_attempt() -> None:
    job = JobSpec(generation_id=12, attempt=3, template="Text to video!", workflow={}, params={})
    assert output_filename(job, CODECS[0]) == "Text-to-video-g12-a3.mp4"


def test_it_renders_the_requested_frames_and_size(renders: dict[str, Rendered]) -> None:
    first = renders["first"]
    assert len(first.frames) == 9 and first.summary["frames"] == 9
    assert first.size == (64, 48)
    assert first.frames[0].shape == (48, 64, 3)


def test_it_encodes_something_chromium_plays(renders: dict[str, Rendered]) -> None:
    first = renders["first"]
    assert (first.summary["codec"], first.codec, first.summary["content_type"]) == (
        "libx264",
        "h264",
        "video/mp4",
    )
    assert first.frames[0].dtype == np.uint8
    # faststart: the index (moov) comes before the media data, so playback starts early.
    boxes = mp4_boxes(first.path)
    assert boxes.index("moov") < boxes.index("mdat")


def test_it_is_deterministic_for_a_prompt_and_seed(renders: dict[str, Rendered]) -> None:
    assert np.array_equal(renders["first"].frames[0], renders["again"].frames[0])
    assert np.array_equal(renders["first"].frames[-1], renders["again"].frames[-1])


def test_it_differs_for_another_seed(renders: dict[str, Rendered]) -> None:
    assert len(renders["other_seed"].frames) == 3
    assert not np.array_equal(renders["first"].frames[0], renders["other_seed"].frames[0])


def test_it_moves_over_time(renders: dict[str, Rendered]) -> None:
    frames = renders["first"].frames
    assert not np.array_equal(frames[0], frames[-1])


def test_it_explains_bad_params_on_the_command_line(
    worker_python: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    args = ["--prompt", "x", "--seed", "1", "--frames", "2", "--width", "63", "--height", "48"]
    command = [worker_python, "-m", "gpu_worker", "render", *args, "--out", str(tmp_path / "x.mp4")]
    proc = subprocess.run(command, cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Parameter width must be even, got 63." in proc.stderr


STOP_SCRIPT = """
import json, sys, time
from pathlib import Path
from gpu_worker.backends import JobCancelled, JobContext, JobError, JobSpec
from gpu_worker.backends.synthetic import SyntheticBackend

job = JobSpec(1, 1, "t", {}, json.loads(sys.argv[1]))
steps = []
ctx = JobContext(
    Path(sys.argv[2]), on_progress=lambda *a: steps.append(a[1]), is_cancelled=lambda: len(steps) >= 3
)
result = {}
try:
    SyntheticBackend().run(job, ctx)
except JobCancelled:
    result["cancelled_after"] = len(steps)
try:
    SyntheticBackend().run(job, JobContext(Path(sys.argv[2]), timeout=5, deadline=time.monotonic() - 1))
except JobError as exc:
    result["timeout"] = [exc.message, exc.retriable]
print(json.dumps(result))
"""


def test_it_stops_between_frames_on_cancel_and_deadline(
    worker_python: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    params = json.dumps({**VALID, "frames": 50})
    proc = subprocess.run(
        [worker_python, "-c", STOP_SCRIPT, params, str(tmp_path)],
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["cancelled_after"] == 3
    assert result["timeout"] == [
        "The generation took longer than its time limit (5 s) and was stopped; you can retry.",
        True,
    ]


PREVIEW_SCRIPT = """
import json, sys, time
from pathlib import Path
from gpu_worker.backends import JobContext, JobSpec
from gpu_worker.backends.synthetic import SyntheticBackend
from gpu_worker.previews import PreviewForwarder

sent = []
keep = lambda data, kind, w, h: sent.append([time.monotonic(), kind, w, h, data[:2].hex()])
forward = PreviewForwarder(keep)
ctx = JobContext(workdir=Path(sys.argv[2]), on_preview=forward)
job = JobSpec(generation_id=1, attempt=1, template="synthetic", workflow={}, params=json.loads(sys.argv[1]))
SyntheticBackend(frame_delay=0.1).run(job, ctx)
print(json.dumps(sent))
"""


def test_it_sends_preview_frames_at_most_twice_a_second(
    worker_python: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    params = json.dumps({**VALID, "frames": 20, "width": 640, "height": 360})
    proc = subprocess.run(
        [worker_python, "-c", PREVIEW_SCRIPT, params, str(tmp_path)],
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout)
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:], strict=False)]
    assert len(sent) >= 3 and min(gaps) >= 0.5
    # Small JPEGs (FF D8), scaled to the protocol's largest side.
    assert {(kind, w, h, magic) for _, kind, w, h, magic in sent} == {("image/jpeg", 320, 180, "ffd8")}
