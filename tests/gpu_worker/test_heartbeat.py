from __future__ import annotations

import sys
from pathlib import Path
from uuid import uuid4

import pytest
from redis import Redis

from gpu_worker import protocol
from gpu_worker.heartbeat import Heartbeat, gpu_info, identity, parse_job_id
from tests.live import wait_for

from .conftest import ROOT


def test_it_parses_generation_and_attempt_from_a_job_id() -> None:
    assert parse_job_id(protocol.job_id(12, 3)) == ("12", "3")
    assert parse_job_id(None) == ("", "")
    assert parse_job_id("something-else") == ("", "")


def test_it_writes_who_the_worker_is_and_what_it_runs(redis_conn) -> None:
    beat = Heartbeat(redis_conn, name="w1", queues=["video"], probe=lambda: ("busy", "gen-5-a2"))
    beat.beat()
    fields = {k.decode(): v.decode() for k, v in redis_conn.hgetall(protocol.worker_key("w1")).items()}
    assert (fields["state"], fields["queues"], fields["generation_id"], fields["attempt"]) == (
        "busy",
        "video",
        "5",
        "2",
    )
    assert 0 < redis_conn.ttl(protocol.worker_key("w1")) <= protocol.HEARTBEAT_TTL_S
    assert redis_conn.sismember(protocol.WORKERS_SET, "w1")


def test_it_says_goodbye_when_stopped(redis_conn) -> None:
    beat = Heartbeat(redis_conn, name="w2", queues=["video"], probe=lambda: ("idle", None), interval=0.05)
    beat.start()
    beat.stop()
    assert not redis_conn.exists(protocol.worker_key("w2"))
    assert not redis_conn.sismember(protocol.WORKERS_SET, "w2")


def test_it_says_who_the_worker_is(redis: Redis) -> None:
    name = f"test-identity-{uuid4().hex}"
    info = identity(
        provider="verda-serverless", price_per_hour=2.5, billing_seconds=600, templates=["a", "b"]
    )
    beat = Heartbeat(redis, name=name, queues=["video"], probe=lambda: ("idle", None), info=info)
    beat.update({"gpu": "NVIDIA H100 80GB HBM3", "vram_gb": "79.2"})
    beat.beat()
    fields = {k.decode(): v.decode() for k, v in redis.hgetall(protocol.worker_key(name)).items()}
    redis.delete(protocol.worker_key(name))
    redis.srem(protocol.WORKERS_SET, name)
    assert {k: fields[k] for k in info} == {
        "provider": "verda-serverless",
        "price_per_hour": "2.5",
        "billing_seconds": "600",
        "templates": "a,b",
        "gpu": "NVIDIA H100 80GB HBM3",
        "vram_gb": "79.2",
    }


FAKE_TORCH = """
from types import SimpleNamespace
h100 = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85_031_714_816)
cuda = SimpleNamespace(is_available=lambda: True, get_device_properties=lambda index: h100)
"""


def test_it_asks_torch_about_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "torch.py").write_text(FAKE_TORCH)  # the child process imports this torch
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    info = gpu_info(device_files=[str(ROOT)])  # as if a driver were loaded
    assert info == {"gpu": "NVIDIA H100 80GB HBM3", "vram_gb": "79.2"}


def test_it_names_no_gpu_it_cannot_ask_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no nvidia-smi either
    info = gpu_info(python="/nonexistent/python", device_files=[str(ROOT)])
    assert info == {"gpu": "unknown", "vram_gb": ""}


@pytest.mark.skipif(sys.platform != "linux", reason="device files are how Linux shows a driver")
def test_it_knows_there_is_no_gpu_without_a_driver() -> None:
    assert gpu_info(python="/nonexistent/python", device_files=[]) == {"gpu": "cpu", "vram_gb": ""}


def test_it_beats_at_once_when_kicked(redis_conn) -> None:
    job: list[str | None] = [None]
    beat = Heartbeat(redis_conn, name="w3", queues=["video"], probe=lambda: ("busy", job[0]), interval=3600)
    beat.start()
    try:
        job[0] = protocol.job_id(7, 1)  # the worker took a job: the conductor must not wait an interval
        beat.kick()
        wait_for(lambda: redis_conn.hget(protocol.worker_key("w3"), "generation_id") == b"7", timeout=10)
    finally:
        beat.stop()
