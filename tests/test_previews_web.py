"""Preview frames from the worker: kept per job in Redis, shown on the running job card."""

from __future__ import annotations

import base64
import json

from generations.dispatch import attempts
from generations.dispatch.conductor import Conductor
from gpu_worker import protocol

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def running(generation) -> None:
    attempts.generation_dispatch(generation=generation)
    attempts.event_apply({"type": "started", "generation_id": generation.pk, "attempt": 1, "worker": "w"})


def send_preview(redis_conn, generation) -> None:
    event = {
        "type": "preview",
        "generation_id": generation.pk,
        "attempt": 1,
        "ts": 12.5,
        "image": base64.b64encode(PNG).decode(),
        "content_type": "image/png",
    }
    redis_conn.xadd(protocol.EVENTS_STREAM, {"data": json.dumps(event)})


def test_it_keeps_the_latest_preview_and_drops_it_from_the_stream(redis_conn, generation) -> None:
    running(generation)
    conductor = Conductor(connection=redis_conn)
    send_preview(redis_conn, generation)
    conductor.consume_once(block_ms=10)
    assert redis_conn.xlen(protocol.EVENTS_STREAM) == 0


def test_it_shows_the_preview_on_the_running_card(redis_conn, owner_client, generation) -> None:
    running(generation)
    send_preview(redis_conn, generation)
    Conductor(connection=redis_conn).consume_once(block_ms=10)
    card = owner_client.get(f"/generations/{generation.pk}/card").content.decode()
    assert f"/generations/{generation.pk}/preview?t=12.5" in card
    response = owner_client.get(f"/generations/{generation.pk}/preview")
    assert response.content == PNG and response["Content-Type"] == "image/png"


def test_it_hides_the_preview_from_another_filmmaker(redis_conn, other_client, generation) -> None:
    running(generation)
    send_preview(redis_conn, generation)
    Conductor(connection=redis_conn).consume_once(block_ms=10)
    assert other_client.get(f"/generations/{generation.pk}/preview").status_code == 404
