from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from django.test import Client

from accounts.models import User
from generations.authoring.demo import synthetic_template
from generations.models import Generation, Round, WorkflowTemplate

from . import comfyui_real
from .redis_server import WEB_USER, RedisServer

VALID = {
    "prompt": "a lighthouse at dusk, slow dolly in",
    "seed": "7",
    "frames": "9",
    "width": "64",
    "height": "64",
    "fps": "12",
}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    # Runs on one machine at once (several developers, CI) each get their own test database.
    for db in settings.DATABASES.values():
        db.setdefault("TEST", {})["NAME"] = f"test_{db['NAME']}_{os.getpid()}"


@pytest.fixture
def redis_conn(request: pytest.FixtureRequest) -> redis_lib.Redis:
    if "live_stack" in request.fixturenames:
        request.getfixturevalue("live_stack")  # it moves the test onto its private Redis first
    conn = redis_lib.Redis.from_url(settings.REDIS_URL)
    conn.ping()
    return conn


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This run's own redis-server with ACLs (see tests/redis_server.py)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def acl_redis(redis_server: RedisServer, settings) -> RedisServer:  # type: ignore[no-untyped-def]
    """The private Redis, emptied, with the test process acting as the web app on it."""
    redis_server.reset()
    settings.REDIS_URL = redis_server.url(WEB_USER)
    # The channel layer too: a push the test sends must reach the sockets of the web processes on it.
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for host in layers["default"]["CONFIG"]["hosts"]:
        host["address"] = settings.REDIS_URL
    settings.CHANNEL_LAYERS = layers  # channels drops its cached layer on the change, and after the test
    return redis_server


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    # The default hasher is slow by design; tests only need it to work.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def live_stack(transactional_db: None, settings, tmp_path, acl_redis: RedisServer):  # type: ignore[no-untyped-def]
    """The real web server, conductor and GPU workers (each its own enrolled host) on a private
    Redis with ACLs; the test starts what it needs."""
    from django.db import connection

    from tests.live import LiveStack, database_url

    (tmp_path / "logs").mkdir()
    stack = LiveStack(
        database=database_url(connection.settings_dict),
        redis_url=settings.REDIS_URL,
        media_root=settings.MEDIA_ROOT,
        logs=tmp_path / "logs",
        redis_server=acl_redis,
    )
    settings.PUBLIC_BASE_URL = stack.url
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def _clean_redis(request: pytest.FixtureRequest) -> None:
    # Each run owns a Redis database (REDIS_URL, else one claimed by tests/redis_db.py).
    if {"redis_conn", "live_stack"} & set(request.fixturenames):
        redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()


def make_user(username: str, role: str = User.Role.FILMMAKER, **extra: Any) -> User:
    return User.objects.create_user(username=username, password="pw-for-tests-1", role=role, **extra)


@pytest.fixture
def owner(db: None) -> User:
    return make_user("alice")


@pytest.fixture
def other(db: None) -> User:
    return make_user("bob")


@pytest.fixture
def instructor(db: None) -> User:
    return make_user("ines", role=User.Role.INSTRUCTOR, is_staff=True)


@pytest.fixture
def template(db: None) -> WorkflowTemplate:
    return synthetic_template()


@pytest.fixture
def open_round(template: WorkflowTemplate) -> Round:
    rnd = Round.objects.create(title="Round 1", brief="One shot.", status=Round.Status.OPEN)
    rnd.templates.add(template)
    return rnd


@pytest.fixture
def owner_client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def other_client(other: User) -> Client:
    client = Client()
    client.force_login(other)
    return client


@pytest.fixture
def valid_data(template: WorkflowTemplate) -> dict[str, str]:
    return {**VALID, "template": str(template.pk)}


@pytest.fixture
def generation(owner: User, open_round: Round, template: WorkflowTemplate) -> Generation:
    from generations.queue import services

    params = {"prompt": "a lighthouse", "seed": 7, "frames": 9, "width": 64, "height": 64, "fps": 12}
    return services.generation_create(owner=owner, round_id=open_round.pk, template=template, params=params)


@pytest.fixture(scope="session")
def real_comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real ComfyUI: COMFYUI_URL, else one started from .comfyui/ for the session."""
    if url := os.environ.get("COMFYUI_URL"):
        yield url.rstrip("/")
        return
    comfyui_real.require_installed()
    server = comfyui_real.RealComfyUI(tmp_path_factory.mktemp("comfyui")).start()
    yield server.url
    server.stop()
