"""A GPU host's credential turned against the workshop: each test performs one of the attacks of
issue 13 with the credential of an enrolled host ("mallory") against the real processes on a
private Redis with ACLs, while an honest worker serves a filmmaker's generation submitted at the
same time, which must still succeed."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore

from accounts.models import User
from generations.authoring.demo import synthetic_template
from generations.models import Generation, Round, WorkflowTemplate
from generations.queue import services
from gpu_worker import protocol
from gpu_worker.heartbeat import Heartbeat
from tests.live import LiveStack, wait_for

S = Generation.Status
PARAMS = {"prompt": "a lighthouse at dusk", "seed": 3, "frames": 9, "width": 64, "height": 48, "fps": 12}


@dataclass
class Mallory:
    """An enrolled host's credential in an attacker's hands: its Redis connection and HTTP auth."""

    username: str
    secret: str
    redis: redis.Redis
    heartbeat: Heartbeat | None = None

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.secret)

    def event(self, **event: Any) -> None:
        """Append an event to its own stream, as its worker would."""
        event.setdefault("worker", self.username)
        event.setdefault("ts", time.time())
        self.redis.xadd(protocol.host_events_stream(self.username), {"data": json.dumps(event)})

    def take(self, queue: str) -> dict[str, Any]:
        """Take the next job of ``queue`` as a worker would, and say it started: it now holds it."""
        job_id = wait_for(
            lambda: self.redis.lmove(f"rq:queue:{queue}", f"rq:queue:{queue}:intermediate"),
            timeout=30,
            what=f"a job on {queue}",
        )
        data = self.redis.hget(f"rq:job:{job_id.decode()}", "data")
        _func, _instance, _args, kwargs = json.loads(zlib.decompress(data))
        self.beat(job_id.decode())
        self.event(type="started", generation_id=kwargs["generation_id"], attempt=kwargs["attempt"])
        return kwargs

    def beat(self, job_id: str | None) -> None:
        """Heartbeat as a worker of this host that runs ``job_id`` (else the attempt is soon lost)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.heartbeat = Heartbeat(
            self.redis,
            name=self.username,
            queues=["image"],
            probe=lambda: ("busy" if job_id else "idle", job_id),
            interval=0.5,
            workers_set=protocol.host_workers_set(self.username),
        )
        self.heartbeat.start()


@pytest.fixture
def stack(live_stack: LiveStack) -> LiveStack:
    # Lost workers are noticed in seconds here, not the production half-minute.
    live_stack.env.update(
        {"WORKER_LOST_AFTER": "6", "LOST_GRACE_SECONDS": "2", "GPU_WORKER_HEARTBEAT_S": "0.5"}
    )
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker("honest", frame_delay=0.05)
    return live_stack


@pytest.fixture
def mallory(live_stack: LiveStack) -> Iterator[Mallory]:
    env = live_stack.enrol("mallory")
    conn = redis.Redis.from_url(env["REDIS_URL"])
    conn.ping()
    url = httpx.URL(env["REDIS_URL"])
    attacker = Mallory(username=url.username, secret=url.password, redis=conn)
    yield attacker
    if attacker.heartbeat is not None:
        attacker.heartbeat.stop()


@pytest.fixture
def filmmaker(db: None) -> User:
    return User.objects.create_user(username="frances", password="pw-for-tests-1")


@pytest.fixture
def video_round(db: None) -> Round:
    rnd = Round.objects.create(title="Round 1", status=Round.Status.OPEN, quota=20)
    rnd.templates.add(synthetic_template())
    return rnd


@pytest.fixture
def bait_template(video_round: Round) -> WorkflowTemplate:
    """The same template on the `image` queue, which no honest worker serves: its jobs wait there
    until mallory takes them (so the attacker holds an attempt deterministically)."""
    source = synthetic_template()
    bait = WorkflowTemplate.objects.create(
        name="Bait", slug="bait", workflow=source.workflow, param_spec=source.param_spec, queue="image"
    )
    video_round.templates.add(bait)
    return bait


def submit(owner: User, rnd: Round, template: WorkflowTemplate | None = None, **params: Any) -> Generation:
    template = template or rnd.templates.get(slug=synthetic_template().slug)
    return services.generation_create(
        owner=owner, round_id=rnd.pk, template=template, params={**PARAMS, **params}
    )


def status_of(g: Generation) -> str:
    return Generation.objects.values_list("status", flat=True).get(pk=g.pk)


def succeeds(stack: LiveStack, g: Generation, timeout: float = 60) -> Generation:
    wait_for(
        lambda: status_of(g) in Generation.TERMINAL,
        timeout=timeout,
        what=f"generation {g.pk} to finish\n" + stack.log("honest") + stack.log("conductor"),
    )
    g.refresh_from_db()
    assert g.status == S.SUCCEEDED, (g.status, g.error_message, g.error_detail)
    assert g.current_takes(), "a succeeded generation has its take"
    return g


def session_for(user: User) -> dict[str, str]:
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return {"sessionid": session.session_key}


def browser(stack: LiveStack, user: User) -> httpx.Client:
    return httpx.Client(base_url=stack.url, cookies=session_for(user), timeout=30)
