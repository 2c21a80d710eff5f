from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from gpu_worker import protocol
from gpu_worker.events import PROGRESS_PAUSE_AFTER_ERROR_S, EventEmitter

Events = Callable[[], list[dict[str, Any]]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emitter(redis: Redis, stream: str, clock: FakeClock) -> EventEmitter:
    return EventEmitter(redis, stream=stream, worker="gpu-test-1", clock=clock)


def test_it_writes_started_in_the_protocol_shape(emitter: EventEmitter, read_events: Events) -> None:
    emitter.started(7, 2)
    [event] = read_events()
    assert set(event) == {"type", "generation_id", "attempt", "worker", "ts"}
    assert (event["type"], event["generation_id"], event["attempt"]) == (protocol.STARTED, 7, 2)
    assert event["worker"] == "gpu-test-1"
    assert isinstance(event["ts"], float) and abs(event["ts"] - time.time()) < 5


def test_it_writes_one_data_field_per_entry(emitter: EventEmitter, redis: Redis, stream: str) -> None:
    emitter.started(7, 2)
    [(_, fields)] = redis.xrange(stream)
    assert list(fields) == [b"data"]


def test_it_writes_progress_fields(emitter: EventEmitter, read_events: Events) -> None:
    assert emitter.progress(7, 2, 12.5, step=3, steps=24, message="Rendering frame 3/24")
    [event] = read_events()
    assert event["type"] == protocol.PROGRESS
    assert (event["percent"], event["step"], event["steps"]) == (12.5, 3, 24)
    assert event["message"] == "Rendering frame 3/24"


def test_it_throttles_progress(emitter: EventEmitter, clock: FakeClock, read_events: Events) -> None:
    emitter.progress(7, 2, 10.0, step=1, steps=10)
    clock.now += protocol.PROGRESS_MIN_INTERVAL_S / 2
    assert not emitter.progress(7, 2, 20.0, step=2, steps=10)
    clock.now += protocol.PROGRESS_MIN_INTERVAL_S / 2
    assert emitter.progress(7, 2, 30.0, step=3, steps=10)
    assert [e["percent"] for e in read_events()] == [10.0, 30.0]


def test_it_always_sends_the_final_step(emitter: EventEmitter, read_events: Events) -> None:
    emitter.progress(7, 2, 10.0, step=1, steps=10)
    assert emitter.progress(7, 2, 90.0, step=10, steps=10)
    assert [e["step"] for e in read_events()] == [1, 10]


def test_it_always_sends_100_percent(emitter: EventEmitter, read_events: Events) -> None:
    emitter.progress(7, 2, 10.0)
    assert emitter.progress(7, 2, 100.0, message="Done")
    assert [e["percent"] for e in read_events()] == [10.0, 100.0]


def test_it_never_sends_a_lower_percent(emitter: EventEmitter, clock: FakeClock, read_events: Events) -> None:
    emitter.progress(7, 2, 50.0)
    clock.now += 1
    emitter.progress(7, 2, 40.0, message="Second sampler")
    assert [(e["percent"], e["message"]) for e in read_events()] == [(50.0, ""), (50.0, "Second sampler")]


def test_it_throttles_each_attempt_on_its_own(emitter: EventEmitter, read_events: Events) -> None:
    emitter.progress(7, 1, 80.0)
    assert emitter.progress(7, 2, 5.0)
    assert [(e["attempt"], e["percent"]) for e in read_events()] == [(1, 80.0), (2, 5.0)]


def test_it_writes_succeeded_with_the_outputs(emitter: EventEmitter, read_events: Events) -> None:
    emitter.succeeded(7, 2, ["demo-g7-a2.mp4", "demo-g7-a2.png"])
    [event] = read_events()
    assert event["type"] == protocol.SUCCEEDED
    assert event["outputs"] == ["demo-g7-a2.mp4", "demo-g7-a2.png"]


def test_it_writes_failed_with_message_detail_and_retriable(
    emitter: EventEmitter, read_events: Events
) -> None:
    emitter.failed(7, 2, "Out of memory.", detail="CUDA OOM at node 12", retriable=True)
    [event] = read_events()
    assert event["type"] == protocol.FAILED
    assert (event["message"], event["detail"], event["retriable"]) == (
        "Out of memory.",
        "CUDA OOM at node 12",
        True,
    )


def test_it_caps_the_stream_length(redis: Redis, stream: str) -> None:
    emitter = EventEmitter(redis, stream=stream, worker="gpu-test-1", maxlen=10)
    for generation_id in range(500):
        emitter.started(generation_id, 1)
    # Approximate trimming only drops whole radix-tree nodes, so expect "far fewer", not 10.
    assert redis.xlen(stream) < 500


@pytest.fixture
def dead_redis(closed_port: int) -> Redis:
    return Redis(port=closed_port, retry=Retry(NoBackoff(), 0))


def test_it_drops_progress_while_redis_is_down(dead_redis: Redis, stream: str, clock: FakeClock) -> None:
    emitter = EventEmitter(dead_redis, stream=stream, worker="gpu-test-1", clock=clock)
    assert emitter.progress(7, 2, 10.0) is False


def test_it_pauses_progress_after_a_failed_write(
    dead_redis: Redis, redis: Redis, stream: str, clock: FakeClock
) -> None:
    emitter = EventEmitter(dead_redis, stream=stream, worker="gpu-test-1", clock=clock)
    emitter.progress(7, 2, 10.0)
    emitter.redis = redis  # Redis is back, but the pause still holds
    assert emitter.progress(7, 2, 100.0) is False
    clock.now += PROGRESS_PAUSE_AFTER_ERROR_S
    assert emitter.progress(7, 2, 100.0) is True


def test_it_raises_when_a_final_event_cannot_be_written(dead_redis: Redis, stream: str) -> None:
    emitter = EventEmitter(dead_redis, stream=stream, worker="gpu-test-1", retry_delays=(0, 0))
    with pytest.raises(RedisConnectionError):
        emitter.failed(7, 2, "Out of memory.")


def test_it_writes_cancelled(emitter: EventEmitter, read_events: Events) -> None:
    emitter.cancelled(7, 2)
    [event] = read_events()
    assert (event["type"], event["generation_id"], event["attempt"]) == (protocol.CANCELLED, 7, 2)


def test_it_writes_a_preview_as_base64(emitter: EventEmitter, read_events: Events) -> None:
    assert emitter.preview(7, 2, b"\xff\xd8jpeg", "image/jpeg", 32, 24)
    [event] = read_events()
    assert (event["type"], event["content_type"], event["width"], event["height"]) == (
        protocol.PREVIEW,
        "image/jpeg",
        32,
        24,
    )
    assert base64.b64decode(event["image"]) == b"\xff\xd8jpeg"


def test_it_refuses_a_preview_over_the_size_cap(emitter: EventEmitter, read_events: Events) -> None:
    assert not emitter.preview(7, 2, b"x" * (protocol.PREVIEW_MAX_BYTES + 1), "image/jpeg", 1, 1)
    assert read_events() == []
