from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from gpu_worker.health import HealthServer


def get(port: int, path: str = "/health") -> tuple[int, dict[str, object]]:
    try:
        with urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def status() -> Iterator[list[tuple[bool, str]]]:
    """What the server answers from: the last item; tests append to change it."""
    yield [(False, "warming")]


@pytest.fixture
def server(status: list[tuple[bool, str]]) -> Iterator[HealthServer]:
    health = HealthServer(lambda: status[-1], port=0, host="127.0.0.1").start()
    yield health
    health.stop()


def test_it_answers_503_until_ready(server: HealthServer) -> None:
    assert get(server.port) == (503, {"ready": False, "state": "warming"})


def test_it_answers_200_once_ready(server: HealthServer, status: list[tuple[bool, str]]) -> None:
    status.append((True, "busy"))
    assert get(server.port) == (200, {"ready": True, "state": "busy"})


def test_it_answers_503_when_the_status_fails(server: HealthServer, status: list[tuple[bool, str]]) -> None:
    status.append(None)  # type: ignore[arg-type]  # unpacking it raises
    assert get(server.port) == (503, {"ready": False, "state": "unknown"})


def test_it_knows_only_health(server: HealthServer) -> None:
    assert get(server.port, "/") == (404, {"error": "not found"})
