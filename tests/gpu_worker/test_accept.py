"""`gpu-worker accept --allow-cpu` on this CPU host: steps 1-5 against the real ComfyUI the tests
install (tests/comfyui_real.py), in the worker venv; and what it says when things are missing."""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import pytest
from redis import Redis

from gpu_worker import protocol
from gpu_worker.accept import Acceptance, Host, step_cancels, with_test_nodes
from gpu_worker.doctor import nvidia_driver
from tests.comfyui_real import TEST_NODES, RealComfyUI, require_installed, require_nodes

from .conftest import ROOT, wait_for

if TYPE_CHECKING:
    from tests.gpu_worker.conftest import UploadServer
    from tests.gpu_worker.fake_comfyui import FakeComfyUI

# ComfyUI starts in 15 to 60 s on this busy 2-core machine, and one test starts it twice.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MODEL_FREE = ROOT / "gpu_worker" / "workflows" / "model_free_video.json"


@dataclass
class Accepted:
    code: int
    lines: list[str]
    stderr: str
    figures: dict[str, Any]
    workdir: Path

    def step(self, tag: str) -> str:
        [line] = [line for line in self.lines if line.startswith(f"[{tag}]")]
        return line


def accept(python: str, env: dict[str, str], workdir: Path, *options: str, timeout: float = 600) -> Accepted:
    argv = [python, "-m", "gpu_worker", "accept", "--allow-cpu", "--workdir", str(workdir), *options]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.splitlines()
    return Accepted(proc.returncode, lines, proc.stderr, json.loads(lines[-1]), workdir)


def accept_workers(redis: Redis) -> list[str]:
    return [name.decode() for name in redis.smembers(protocol.WORKERS_SET) if name.startswith(b"accept-")]


@pytest.fixture(scope="module")
def accepted(
    real_comfyui: str,
    redis: Redis,
    redis_url: str,
    http_server: UploadServer,
    worker_python: str,
    worker_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Accepted:
    """All five steps with their default counts (20 runs, 5 cancels) on the running real ComfyUI;
    a small synthetic clip, so the CPU is not busy for half a minute."""
    require_nodes(real_comfyui, "TestSleep")
    http_server.reset()
    options = ["--redis-url", redis_url, "--comfyui-url", real_comfyui, "--upload-url", http_server.url()]
    options += ["--synthetic-size", "160x96", "--synthetic-frames", "12", "--workflow", str(MODEL_FREE)]
    done = accept(worker_python, worker_env, tmp_path_factory.mktemp("accept"), *options)
    assert done.code == 0, "\n".join(done.lines) + done.stderr
    assert [upload.path.rsplit("/", 1)[1] for upload in http_server.uploads] == ["doctor-check.mp4"]
    return done


def test_it_runs_the_five_steps_in_order_with_a_line_each(accepted: Accepted) -> None:
    tags = [line.split("]")[0] + "]" for line in accepted.lines if line.startswith("[")]
    assert tags == ["[1/5 doctor]", "[2/5 synthetic]", "[3/5 ComfyUI]", "[4/5 cancel]", "[5/5 workflow]"]
    assert accepted.step("1/5 doctor").startswith("[1/5 doctor] warning: 5 ok, 2 warning(s), 0 problem(s)")
    assert accepted.step("2/5 synthetic").startswith("[2/5 synthetic] ok: 12 frames 160x96 on cpu in ")
    assert "ComfyUI's own start -> ready not measured (it was running" in accepted.step("3/5 ComfyUI")
    assert accepted.step("4/5 cancel").endswith("ComfyUI's queue empty after 5 of them")
    assert accepted.lines[-2] == "all steps passed"


def test_it_ends_with_the_figures_as_one_json_line(accepted: Accepted) -> None:
    figures = accepted.figures
    assert (figures["goal_met"], figures["problems"], figures["gpu"], figures["synthetic_device"]) == (
        True,
        0,
        "cpu",
        "cpu",
    )
    assert (figures["runs"], figures["cancels"], figures["queue_empty_after_cancel"]) == (20, 5, 5)
    assert 0 < figures["comfyui_execution_median_s"] < figures["job_wall_median_s"]
    assert 0 < figures["overhead_median_s"] <= figures["overhead_p95_s"]
    assert 0 < figures["cancel_to_free_median_s"] <= figures["cancel_to_free_max_s"]
    assert figures["worker_start_to_idle_s"] > 0 and figures["comfyui_start_to_ready_s"] is None
    # Both figures are rounded (seconds to 1 ms, fps to 0.01), and a fast CPU renders the clip in
    # about 13 ms, so the check allows for the rounding instead of a fixed 1%.
    seconds = figures["synthetic_seconds"]
    assert 12 / (seconds + 0.0005) - 0.005 <= figures["synthetic_fps"] <= 12 / (seconds - 0.0005) + 0.005


def test_it_renders_the_synthetic_clip_at_the_size_asked(accepted: Accepted) -> None:
    with av.open(str(accepted.workdir / "synthetic.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.width, stream.height, frames) == (160, 96, 12)


def test_it_runs_the_given_workflow_once_and_keeps_its_output(accepted: Accepted) -> None:
    [workflow] = accepted.figures["workflows"]
    [output] = (accepted.workdir / "workflow-model_free_video").iterdir()
    assert (workflow["name"], workflow["peak_vram_gb"]) == ("model_free_video.json", None)
    assert workflow["output_bytes"] == output.stat().st_size > 0
    assert "no CUDA: no VRAM" in accepted.step("5/5 workflow")


def test_it_stops_its_worker_which_says_goodbye(accepted: Accepted, redis: Redis) -> None:
    assert accepted.figures["worker_start_to_idle_s"] > 0
    assert accept_workers(redis) == []


def test_it_launches_comfyui_alone_then_under_the_worker(
    redis: Redis, redis_url: str, worker_python: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """With --comfyui-command: ComfyUI's own start, then the worker's, with ComfyUI's test nodes
    loaded from its source tree (this ComfyUI's custom_nodes/ is empty)."""
    require_installed()
    server = RealComfyUI(tmp_path / "comfyui")
    command = shlex.join(server.command())
    options = ["--redis-url", redis_url, "--comfyui-url", server.url, "--comfyui-command", command]
    options += ["--synthetic-size", "32x32", "--synthetic-frames", "2", "--runs", "2", "--cancels", "1"]
    done = accept(worker_python, worker_env, tmp_path / "accept", *options)
    assert done.code == 0, "\n".join(done.lines) + done.stderr
    assert done.step("ComfyUI").startswith("[ComfyUI] ok: launched alone: answering after ")
    assert done.step("ComfyUI").endswith(f"its test nodes from {TEST_NODES.parent.resolve()}")
    assert "(the ComfyUI it launched answered after " in done.step("3/5 ComfyUI")
    figures = done.figures
    assert figures["comfyui_start_to_ready_s"] > 0 and figures["queue_empty_after_cancel"] == 1
    assert 0 < figures["comfyui_answering_in_worker_start_s"] <= figures["worker_start_to_idle_s"]
    assert list((tmp_path / "comfyui" / "custom_nodes").iterdir()) == []
    with pytest.raises(OSError):  # the worker stopped the ComfyUI it launched
        socket.create_connection(("127.0.0.1", server.port), 0.5).close()
    assert accept_workers(redis) == []


def test_it_exits_non_zero_with_a_problem_per_step_when_services_are_down(
    closed_port: int, worker_python: str, worker_env: dict[str, str], tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{closed_port}"
    options = ["--redis-url", f"redis://127.0.0.1:{closed_port}/0", "--comfyui-url", down]
    options += ["--comfyui-command", "sh -c 'exit 3'"]  # a ComfyUI that dies at once
    options += ["--synthetic-size", "32x32", "--synthetic-frames", "2", "--workflow", str(MODEL_FREE)]
    done = accept(worker_python, worker_env, tmp_path, *options, timeout=120)
    assert done.code == 1
    assert done.step("ComfyUI").startswith("[ComfyUI] PROBLEM: launched alone with \"sh -c 'exit 3'\": ")
    assert "ComfyUI exited with status 3" in done.step("ComfyUI")
    assert done.step("1/5 doctor").startswith("[1/5 doctor] PROBLEM: ")
    assert done.step("2/5 synthetic").startswith("[2/5 synthetic] ok: ")
    assert "the worker was not started: Redis does not answer" in "\n".join(done.lines)
    assert done.step("4/5 cancel") == f"[4/5 cancel] PROBLEM: no ComfyUI answers at {down}"
    assert done.step("5/5 workflow") == f"[5/5 workflow] PROBLEM: no ComfyUI answers at {down}"
    # The launch, doctor's two (Redis, ComfyUI), the worker's start, the runs, the cancels, the workflow.
    assert (done.figures["goal_met"], done.figures["problems"], done.lines[-2]) == (False, 7, "7 problem(s)")


def test_it_says_what_the_cancels_need_from_a_comfyui_without_testsleep(
    comfy: FakeComfyUI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acc = Acceptance()
    args = argparse.Namespace(cancels=5, comfyui_url=comfy.url)
    step_cancels(acc, Host(args, tmp_path, "accept-test", 1), None, None)  # type: ignore[arg-type]
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("[4/5 cancel] PROBLEM: ComfyUI lacks TestSleep, the node the cancels interrupt.")
    assert "tests/execution/testing_nodes/testing-pack (no weights)" in line and acc.problems == 1


def test_it_loads_comfyuis_test_nodes_from_its_source_tree_when_it_has_them(tmp_path: Path) -> None:
    pack = tmp_path / "ComfyUI" / "tests" / "execution" / "testing_nodes" / "testing-pack"
    pack.mkdir(parents=True)
    command = f"python {tmp_path}/ComfyUI/main.py --port 8188"
    extended, nodes = with_test_nodes(command, tmp_path)
    config = tmp_path / "accept-test-nodes.yaml"
    assert extended == f"{command} --extra-model-paths-config {config}" and nodes == pack.parent
    assert config.read_text() == f'workshop_accept:\n  custom_nodes: "{pack.parent}"\n'
    assert with_test_nodes("python /elsewhere/main.py", tmp_path) == ("python /elsewhere/main.py", None)


def test_it_reads_the_nvidia_driver_version_from_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_driver() == "unknown"
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\n[ "$1" = --query-gpu=driver_version ] && echo "550.54.15"\n')
    fake.chmod(0o755)
    assert nvidia_driver() == "550.54.15"


def test_it_leaves_no_child_behind_when_it_is_killed(
    tmp_path: Path, worker_python: str, worker_env: dict[str, str]
) -> None:
    """SIGKILLed (a test's timeout, Ctrl-\\), accept's children get SIGTERM from Linux: no worker or
    ComfyUI of its own keeps running."""
    script = "import sys, time; from pathlib import Path; from gpu_worker.accept import Process\n"
    script += "child = Process(['sleep', '60'], Path(sys.argv[1]))\nprint(child.popen.pid, flush=True)\n"
    script += "time.sleep(60)\n"
    parent = subprocess.Popen(
        [worker_python, "-c", script, str(tmp_path / "log")],
        env=worker_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    gone = wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in status(child), timeout=10)
    assert gone


def status(pid: int) -> str:
    """The process state letter from /proc (Z: a zombie nobody reaped yet, as good as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return ""
