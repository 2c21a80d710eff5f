"""Enrolled GPU hosts: enrol, authenticate, revoke, re-apply (generations.fleet.hosts), on a private
Redis with ACLs (ACL users belong to a whole server: never the shared one)."""

from __future__ import annotations

import base64

import pytest
import redis

from generations.broker import acl
from generations.fleet import hosts
from generations.models import GpuHost, SecurityEvent
from gpu_worker import protocol

pytestmark = pytest.mark.django_db


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.fixture
def enrolled(acl_redis) -> hosts.Enrolment:  # type: ignore[no-untyped-def]
    return hosts.host_enrol(name="verda-h100-1", kind="verda-instance")


def test_it_enrols_a_host_with_its_own_redis_user(acl_redis, enrolled) -> None:
    conn = redis.Redis.from_url(enrolled.environment["REDIS_URL"])
    conn.xadd(protocol.host_events_stream("gpu-verda-h100-1"), {"data": "{}"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        conn.xadd(protocol.EVENTS_STREAM, {"data": "{}"})


def test_it_keeps_only_the_secrets_hash(enrolled) -> None:
    host = GpuHost.objects.get()
    assert enrolled.secret not in host.secret_sha256 and host.secret_sha256 == hosts.secret_hash(
        enrolled.secret
    )


def test_it_shows_the_environment_for_each_kind(acl_redis) -> None:
    k8s = hosts.host_enrol(name="pods", kind="kubernetes")
    runpod = hosts.host_enrol(name="rp", kind="runpod-serverless")
    assert k8s.block.startswith("kubectl -n workshop create secret generic gpu-worker ")
    assert "--from-literal=JOB_VERIFY_KEY=" in k8s.block
    assert "JOB_VERIFY_KEY=" in runpod.block and "GPU_WORKER_PROVIDER=runpod-serverless" in runpod.block
    assert "GPU_WORKER_NAME" not in runpod.environment  # each replica names itself


def test_it_refuses_a_bad_or_taken_name(enrolled) -> None:
    with pytest.raises(hosts.EnrolRefused):
        hosts.host_enrol(name="Bad Name", kind="local")
    with pytest.raises(hosts.EnrolRefused):
        hosts.host_enrol(name="verda-h100-1", kind="local")


def test_it_authenticates_the_hosts_credential_only(enrolled) -> None:
    assert hosts.host_authenticate(basic("gpu-verda-h100-1", enrolled.secret)) == enrolled.host
    assert hosts.host_authenticate(basic("gpu-verda-h100-1", "wrong")) is None
    assert hosts.host_authenticate("Bearer " + enrolled.secret) is None


def test_it_revokes_at_once(acl_redis, enrolled) -> None:
    conn = redis.Redis.from_url(enrolled.environment["REDIS_URL"])
    conn.ping()
    assert hosts.host_revoke(host=enrolled.host)
    assert "gpu-verda-h100-1" not in acl.users(acl_redis.admin())
    with pytest.raises(redis.exceptions.ConnectionError):
        conn.ping()  # its connection was closed, and it cannot log in again
    assert hosts.host_authenticate(basic("gpu-verda-h100-1", enrolled.secret)) is None
    assert not hosts.host_revoke(host=enrolled.host)


def test_it_reapplies_the_users_redis_lost(acl_redis, enrolled) -> None:
    acl_redis.admin().execute_command("ACL", "DELUSER", "gpu-verda-h100-1")
    assert hosts.hosts_reapply(acl_redis.admin()) == 1
    assert redis.Redis.from_url(enrolled.environment["REDIS_URL"]).ping()
    assert hosts.hosts_reapply(acl_redis.admin()) == 0


def test_it_coalesces_repeated_refusals(enrolled) -> None:
    for _ in range(3):
        hosts.security_event_record(kind=SecurityEvent.Kind.FOREIGN_EVENT, host=enrolled.host, detail="x")
    assert list(SecurityEvent.objects.values_list("count", flat=True)) == [3]


def test_an_instructor_adds_a_host_and_sees_its_environment_once(acl_redis, instructor) -> None:
    from django.test import Client

    client = Client()
    client.force_login(instructor)
    page = client.post("/instructor/fleet", {"name": "rp-1", "kind": "runpod-serverless"}).content.decode()
    assert "REDIS_URL=redis://gpu-rp-1:" in page and "JOB_VERIFY_KEY=" in page
    again = client.get("/instructor/fleet").content.decode()
    assert "rp-1" in again and "REDIS_URL=" not in again


def test_an_instructor_revokes_a_host(acl_redis, instructor, enrolled) -> None:
    from django.test import Client

    client = Client()
    client.force_login(instructor)
    client.post(f"/instructor/fleet/hosts/{enrolled.host.pk}/revoke")
    assert GpuHost.objects.get().revoked_at is not None


def test_a_filmmaker_cannot_add_a_host(acl_redis, owner_client) -> None:
    assert owner_client.post("/instructor/fleet", {"name": "x", "kind": "local"}).status_code == 403
    assert not GpuHost.objects.exists()


def test_an_admin_adds_a_host_and_sees_its_environment_once(acl_redis, admin_client) -> None:
    page = admin_client.post("/admin/generations/gpuhost/add/", {"name": "k8s", "kind": "kubernetes"})
    assert (
        page.status_code == 200
        and "kubectl -n workshop create secret generic gpu-worker" in page.content.decode()
    )
    assert GpuHost.objects.filter(name="k8s", username="gpu-k8s").exists()


def test_it_counts_refusals_in_the_metrics(enrolled, settings) -> None:
    from django.test import Client

    settings.OPERATOR_API_TOKEN = "t" * 32
    hosts.security_event_record(kind=SecurityEvent.Kind.FOREIGN_UPLOAD, host=enrolled.host)
    body = Client().get("/metrics", headers={"Authorization": "Bearer " + "t" * 32}).content.decode()
    assert 'workshop_gpu_host_refusals{kind="foreign-upload"} 1.0' in body
