"""Faults that must cost no finished render, on real processes (daphne, the conductor, gpu-worker)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from generations.dispatch import attempts
from generations.fleet.hosts import USERNAME_PREFIX
from generations.models import Generation
from generations.queue import services
from gpu_worker import protocol
from gpu_worker.horse import RenderLock
from tests.live import ROOT, alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
S = Generation.Status


def submit(owner, rnd, template, frames: int = 9) -> Generation:
    params = {"prompt": "a fault", "seed": 3, "frames": frames, "width": 32, "height": 32, "fps": 12}
    return services.generation_create(owner=owner, round_id=rnd.pk, template=template, params=params)


def state(g: Generation) -> tuple[str, int]:
    return Generation.objects.values_list("status", "attempt").get(pk=g.pk)


def named(name: str) -> str:
    """The name a worker the stack starts as ``name`` runs under: its enrolled host's user."""
    return USERNAME_PREFIX + name


def beat_of(redis_conn, name: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis_conn.hgetall(protocol.worker_key(named(name))).items()}


def test_a_web_restart_costs_no_render(live_stack, redis_conn, owner, open_round, template) -> None:
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker("w-web", frame_delay=0.3)
    g = submit(owner, open_round, template)
    wait_for(lambda: state(g)[0] == S.RUNNING, timeout=60, what="the render to start")
    live_stack.kill("web")
    # The render finishes while nobody takes it: the worker keeps it and says so.
    wait_for(
        lambda: beat_of(redis_conn, "w-web").get("state") == protocol.DELIVERING,
        timeout=60,
        what="delivering",
    )
    time.sleep(2)
    live_stack.start_web()
    wait_for(lambda: state(g)[0] == S.SUCCEEDED, timeout=60, what="the delivered take")
    g.refresh_from_db()
    assert g.attempt == 1 and len(g.current_takes()) == 1


def test_the_worker_claims_a_job_as_soon_as_it_takes_it(
    live_stack, redis_conn, owner, open_round, template
) -> None:
    live_stack.env["GPU_WORKER_HEARTBEAT_S"] = "3600"  # one beat at start, then only when something changes
    live_stack.start_web()
    live_stack.start_worker("w-claim", frame_delay=0.5)
    wait_for(lambda: beat_of(redis_conn, "w-claim"), timeout=60, what="the worker's first beat")
    g = submit(owner, open_round, template)
    live_stack.start_conductor()
    wait_for(
        lambda: beat_of(redis_conn, "w-claim").get("generation_id") == str(g.pk), timeout=60, what="a claim"
    )
    wait_for(lambda: state(g)[0] == S.SUCCEEDED, timeout=60, what="the take")
    wait_for(lambda: beat_of(redis_conn, "w-claim").get("state") == "idle", timeout=20, what="idle again")
    # And it keeps saying what it delivered: the proof of a success whose event Redis might lose.
    assert beat_of(redis_conn, "w-claim")["delivered"] == protocol.job_id(g.pk, 1)


def test_the_work_horse_dies_with_its_worker(live_stack, redis_conn, owner, open_round, template) -> None:
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker("w-orphan", frame_delay=1.0)
    g = submit(owner, open_round, template)
    wait_for(lambda: state(g)[0] == S.RUNNING, timeout=60, what="the render to start")
    horses = live_stack.kill_parent("w-orphan")
    assert horses
    wait_for(lambda: not any(alive(pid) for pid in horses), timeout=20, what="the work-horse to die too")


def test_a_worker_takes_no_job_while_a_process_of_its_name_renders(
    live_stack, redis_conn, owner, open_round, template
) -> None:
    lock = RenderLock(named("w-lock"))
    hold = f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from gpu_worker.horse import RenderLock; "
    hold += f"RenderLock({named('w-lock')!r}).hold(); time.sleep(600)"
    orphan = subprocess.Popen([sys.executable, "-c", hold])
    try:
        wait_for(lambda: lock.holder() == orphan.pid, timeout=20, what="the stand-in orphan")
        live_stack.start_web()
        live_stack.start_conductor()
        live_stack.start_worker("w-lock")
        g = submit(owner, open_round, template)
        wait_for(
            lambda: beat_of(redis_conn, "w-lock").get("state") == "busy", timeout=60, what="busy, with no job"
        )
        time.sleep(3)
        assert state(g)[0] in (S.QUEUED, S.DISPATCHED)
    finally:
        orphan.kill()
        orphan.wait()
    wait_for(lambda: state(g)[0] == S.SUCCEEDED, timeout=60, what="the job, once the orphan is gone")


def test_rq_reads_failed_for_an_attempt_the_conductor_gave_up(
    live_stack, redis_conn, owner, open_round, template
) -> None:
    live_stack.start_web()
    live_stack.start_worker("w-rq", frame_delay=0.5)
    g = submit(owner, open_round, template, frames=40)
    live_stack.start_conductor()
    wait_for(lambda: state(g)[0] == S.RUNNING, timeout=60, what="the render to start")
    live_stack.kill("conductor")  # nobody re-dispatches: the test watches the lost attempt alone
    assert attempts.attempt_lost(generation_id=g.pk, attempt=1, reason="a test gave up on it")
    job_id = protocol.job_id(g.pk, 1)
    # The worker stops the attempt and tells RQ it was not a success.
    wait_for(
        lambda: beat_of(redis_conn, "w-rq").get("state") == "idle", timeout=30, what="the worker to stop"
    )
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED
    assert job_id not in StartedJobRegistry("video", connection=redis_conn).get_job_ids()
