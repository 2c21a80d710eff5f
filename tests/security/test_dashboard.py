"""Attack 1: a pickled job hash planted by a GPU host ran code inside daphne as soon as staff opened
django-rq's dashboard. Now every queue deserialises JSON only, and only superusers see it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from accounts.models import User
from tests.security.conftest import browser, submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


class Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_it_runs_no_code_from_a_pickled_job_and_answers_every_page(
    stack, mallory, filmmaker, video_round, tmp_path
) -> None:
    g = submit(filmmaker, video_round)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Boom(marker))
    mallory.redis.hset(
        "rq:job:planted",
        mapping={"data": payload, "meta": payload, "origin": "video", "status": "failed", "description": "x"},
    )
    mallory.redis.zadd("rq:failed:video", {"planted": 9_999_999_999})
    mallory.redis.zadd("rq:finished:video", {"planted": 9_999_999_999})
    admin = User.objects.create_superuser("root", password="pw-for-tests-1")
    pages = [
        "",
        "queues/0/",
        "queues/0/details/",
        "queues/0/failed/",
        "queues/0/finished/",
        "queues/0/started/",
        "queues/0/deferred/",
        "queues/0/scheduled/",
        "queues/0/planted/",
        "workers/0/",
    ]
    with browser(stack, admin) as client:
        for page in pages:
            response = client.get(f"/admin/django-rq/{page}")
            assert response.status_code in (200, 404), (page, response.status_code, response.text[-500:])
    assert not marker.exists(), "the pickle ran"
    succeeds(stack, g)


def test_it_shows_the_dashboard_to_superusers_only(stack, instructor) -> None:
    with browser(stack, instructor) as client:
        response = client.get("/admin/django-rq/queues/0/failed/")
    assert response.status_code == 302 and "/admin/login/" in response.headers["location"]
