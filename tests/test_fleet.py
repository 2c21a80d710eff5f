"""Workers say who they are; spend, the autoscaler's target, the operators' API and metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from generations.fleet import autoscale, costs
from generations.fleet import workers as fleet_workers
from generations.models import Generation, Worker
from generations.queue import services
from gpu_worker.heartbeat import Heartbeat

S = Generation.Status
TOKEN = "op-token-123"
INFO = {"provider": "runpod-serverless", "price_per_hour": "3.60", "billing_seconds": "600", "gpu": "H100"}


def beat(redis_conn, name: str = "w1", state: str = "idle", job: str | None = None) -> None:
    Heartbeat(redis_conn, name=name, queues=["video"], probe=lambda: (state, job), info=INFO).beat()


@pytest.fixture
def api(settings) -> Client:
    settings.OPERATOR_API_TOKEN = TOKEN
    return Client(headers={"Authorization": f"Bearer {TOKEN}"})


def test_it_records_who_a_worker_is(redis_conn, db) -> None:
    beat(redis_conn)
    fleet_workers.sync(redis_conn)
    w = Worker.objects.get()
    assert (w.provider, float(w.price_per_hour), w.billing_seconds, w.gpu, w.state) == (
        "runpod-serverless",
        3.6,
        600,
        "H100",
        "idle",
    )


def test_it_bills_online_time_in_whole_granules(redis_conn, db) -> None:
    now = timezone.now()
    Worker.objects.create(
        name="w",
        price_per_hour=3.6,
        billing_seconds=600,
        first_seen=now,
        last_seen=now,
        online_seconds=601,
        busy_seconds=300,
    )
    found = costs.fleet_spend()
    assert round(found.total, 2) == 1.20 and found.utilisation == 300 / 601


def test_it_scales_to_the_work_waiting(redis_conn, owner, open_round, template, settings) -> None:
    settings.TARGET_WAIT_SECONDS, settings.WORKERS_MAX = 60, 40
    for _ in range(6):  # 6 x 5 s (the template's estimate) = 30 s of work, one filmmaker waiting
        services.generation_create(
            owner=owner,
            round_id=open_round.pk,
            template=template,
            params={"prompt": "p", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12},
        )
    assert autoscale.Autoscaler().desired(redis_conn, "video") == 1


def test_it_waits_before_scaling_down_and_honours_warm_now(redis_conn, db, settings) -> None:
    settings.SCALE_DOWN_DELAY_SECONDS, settings.WORKERS_MIN = 300, 0
    scaler = autoscale.Autoscaler()
    autoscale.warm_now(redis_conn, queue="video", workers=3)
    assert scaler.desired(redis_conn, "video", now=1000) == 3
    redis_conn.delete(autoscale.WARM_KEY.format(queue="video"))
    assert scaler.desired(redis_conn, "video", now=1100) == 3  # held through the delay
    assert scaler.desired(redis_conn, "video", now=1400) == 0


def test_it_refuses_the_api_without_the_token(api, db) -> None:
    assert Client().get("/api/queue/status").status_code == 401
    assert Client(headers={"Authorization": "Bearer wrong"}).get("/metrics").status_code == 401


def test_it_turns_the_api_off_without_a_configured_token(db) -> None:
    assert Client(headers={"Authorization": "Bearer x"}).get("/api/workers").status_code == 404


def test_it_reports_the_queue(api, redis_conn, generation) -> None:
    beat(redis_conn)
    assert api.get("/api/queue/status").json() == {
        "pending": 1,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "active_workers": 1,
    }


def test_it_lists_the_workers(api, redis_conn, generation) -> None:
    beat(redis_conn, state="busy", job=f"gen-{generation.pk}-a1")
    fleet_workers.sync(redis_conn)
    assert api.get("/api/workers").json() == [
        {
            "id": "w1",
            "provider": "runpod-serverless",
            "state": "busy",
            "gpu": "H100",
            "current_job": generation.pk,
        }
    ]


def test_it_publishes_prometheus_metrics(api, redis_conn, generation) -> None:
    Generation.objects.filter(pk=generation.pk).update(
        status=S.SUCCEEDED, started_at=timezone.now() - timedelta(seconds=100), finished_at=timezone.now()
    )
    autoscale.Autoscaler().publish(redis_conn, ["video"])
    text = api.get("/metrics").content.decode()
    assert 'workshop_desired_workers{queue="video"} 0.0' in text
    assert 'workshop_job_duration_seconds_bucket{le="120"} 1.0' in text
    assert "workshop_spend 0.0" in text and 'workshop_queue_depth{queue="video"}' in text


def test_the_instructor_warms_workers_before_a_demo(client, instructor, open_round, redis_conn) -> None:
    client.force_login(instructor)
    assert client.post("/instructor/warm", {"workers": "4"}).status_code == 204
    assert autoscale.Autoscaler().desired(redis_conn, "video") == 4


def test_it_refuses_a_nonsense_warm_count(client, instructor, redis_conn) -> None:
    client.force_login(instructor)
    assert client.post("/instructor/warm", {"workers": "lots"}).status_code == 422


def test_the_panel_prices_the_fleet_when_workers_report_prices(
    client, instructor, open_round, redis_conn
) -> None:
    now = timezone.now()
    Worker.objects.create(
        name="w",
        price_per_hour=3.6,
        billing_seconds=1,
        first_seen=now,
        last_seen=now,
        online_seconds=3600,
        busy_seconds=1800,
    )
    client.force_login(instructor)
    room = client.get(f"/instructor/rounds/{open_round.pk}/room").content.decode()
    assert "3.60" in room and "busy 50 %" in room
