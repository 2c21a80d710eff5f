"""The whole path with a real ComfyUI (tests/comfyui_real.py): daphne, the conductor and a gpu-worker
subprocess on the comfyui backend, PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from redis import Redis

from accounts.models import User
from generations.authoring import library
from generations.models import Generation, Round, WorkflowTemplate
from generations.queue import services
from gpu_worker import protocol
from tests import comfyui_real
from tests.live import LiveStack, wait_for
from tests.media import count_frames

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
S = Generation.Status
WORKER = "e2e-comfyui-1"
SLEEP_SECONDS = 60.0


@pytest.fixture
def model_free(db: None) -> WorkflowTemplate:
    return library.template_install(library.MODEL_FREE)[0]


@pytest.fixture
def sleepy(db: None, tmp_path: Path) -> WorkflowTemplate:
    """The model-free template with ComfyUI's TestSleep between the noise and the video, installed
    by the same `template_install` as the built-ins: it runs long enough to be cancelled mid-run."""
    workflow = comfyui_real.with_sleep(library.workflow_load(library.MODEL_FREE.workflow_file), SLEEP_SECONDS)
    path = tmp_path / "model_free_sleep.json"
    path.write_text(json.dumps(workflow))
    builtin = dataclasses.replace(
        library.MODEL_FREE,
        slug="model-free-sleep",
        name="Model-free clip after a long sleep",
        workflow_file=str(path),  # an absolute path: WORKFLOWS_DIR / it is the path itself
        estimated_seconds=int(SLEEP_SECONDS),
    )
    return library.template_install(builtin)[0]


@pytest.fixture
def comfy_round(model_free: WorkflowTemplate, sleepy: WorkflowTemplate) -> Round:
    rnd = Round.objects.create(title="Round 1", brief="One shot.", status=Round.Status.OPEN)
    rnd.templates.add(model_free, sleepy)
    return rnd


@pytest.fixture
def stack(live_stack: LiveStack, real_comfyui: str) -> LiveStack:
    # Beats every 0.5 s, so "the worker is idle again" is seen within a second of it being so.
    live_stack.env["GPU_WORKER_HEARTBEAT_S"] = "0.5"
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker(WORKER, backend="comfyui", comfyui_url=real_comfyui)
    return live_stack


def submit(owner: User, rnd: Round, template: WorkflowTemplate, **params: int) -> Generation:
    values = {"seed": 5, "frames": 9, "width": 64, "height": 48, "fps": 12}
    return services.generation_create(
        owner=owner, round_id=rnd.pk, template=template, params={**values, **params}
    )


def status_of(g: Generation) -> str:
    return Generation.objects.values_list("status", flat=True).get(pk=g.pk)


def finished(stack: LiveStack, g: Generation, timeout: float = 60) -> Generation:
    wait_for(
        lambda: status_of(g) in Generation.TERMINAL,
        timeout=timeout,
        what=f"generation {g.pk} to finish\n{stack.log(WORKER)}",
    )
    return Generation.objects.get(pk=g.pk)


def worker_state(redis_conn: Redis) -> str:
    # The worker runs as the host enrolled under its name: its name is that host's user.
    return (redis_conn.hget(protocol.worker_key("gpu-" + WORKER), "state") or b"").decode()


def comfyui_queue(url: str) -> dict[str, list[list[Any]]]:
    return httpx.get(url + "/queue", timeout=5).json()


def cancel_as(stack: LiveStack, user: User, g: Generation) -> httpx.Response:
    """The card's Cancel button: an HTMX POST with the session and the page's CSRF token."""
    browser = Client()
    browser.force_login(user)
    cookies = {"sessionid": browser.cookies[settings.SESSION_COOKIE_NAME].value}
    with httpx.Client(base_url=stack.url, cookies=cookies, timeout=10) as http:
        assert http.get(f"/rounds/{g.round_id}/").status_code == 200  # sets the CSRF cookie
        headers = {"HX-Request": "true", "X-CSRFToken": http.cookies["csrftoken"]}
        return http.post(f"/generations/{g.pk}/cancel", headers=headers)


def test_a_model_free_generation_ends_as_a_decodable_take(
    stack: LiveStack, owner: User, comfy_round: Round, model_free: WorkflowTemplate
) -> None:
    g = submit(owner, comfy_round, model_free, frames=17, width=96, height=64)
    g = finished(stack, g)
    assert g.status == S.SUCCEEDED, (g.error_message, g.error_detail)
    take = g.takes.get()
    assert count_frames(Path(settings.MEDIA_ROOT) / take.file.name) == (17, 96, 64)
    assert take.frame_count == 17 and take.poster and take.filename.endswith(".mp4")


def test_a_cancel_mid_run_frees_the_worker_for_the_next_generation(
    stack: LiveStack,
    redis_conn: Redis,
    real_comfyui: str,
    owner: User,
    comfy_round: Round,
    model_free: WorkflowTemplate,
    sleepy: WorkflowTemplate,
) -> None:
    comfyui_real.require_nodes(real_comfyui, "TestSleep")
    g = submit(owner, comfy_round, sleepy, seed=int(time.time()))  # a new seed: nothing cached
    wait_for(
        lambda: "TestSleep" in Generation.objects.get(pk=g.pk).progress_message,
        timeout=60,
        what=f"ComfyUI to reach the sleep\n{stack.log(WORKER)}",
    )
    wait_for(lambda: worker_state(redis_conn) == "busy", timeout=5, what="a beat that says busy")
    assert status_of(g) == S.RUNNING
    assert [item[1] for item in comfyui_queue(real_comfyui)["queue_running"]] == [f"workshop-g{g.pk}-a1"]
    assert cancel_as(stack, owner, g).status_code == 200
    assert status_of(g) == S.CANCELLED and not g.takes.exists()

    def free() -> bool:
        queue = comfyui_queue(real_comfyui)
        idle = not queue["queue_running"] and not queue["queue_pending"]
        return idle and worker_state(redis_conn) == "idle"

    # Well before the sleep would have ended (usually within a second): interrupted, not waited out.
    wait_for(free, timeout=SLEEP_SECONDS / 3, interval=0.2, what="the worker and ComfyUI to be free")
    assert "cancelled" in stack.log(WORKER)

    after = finished(stack, submit(owner, comfy_round, model_free, frames=9))
    assert after.status == S.SUCCEEDED, (after.error_message, after.error_detail)
    assert count_frames(Path(settings.MEDIA_ROOT) / after.takes.get().file.name) == (9, 64, 48)
    g.refresh_from_db()
    assert g.status == S.CANCELLED and not g.takes.exists()
