"""Enrolled GPU hosts: a tenant that may take our jobs, report on the attempt it holds and upload that
attempt's outputs, and nothing else.

Enrolling one creates its Redis ACL user (``broker.acl``) and hands out, once, the environment to
paste into the provider; the database keeps only the secret's SHA-256. Revoking one deletes the user
(Redis closes its connections), dispatches its in-flight attempts again elsewhere and marks its
workers revoked. The conductor re-applies every active host's user when Redis restarts empty.
Whatever a host sends that crosses its boundary is refused and recorded (``security_event_record``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import shlex
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from generations.broker import acl
from generations.broker.connection import connection
from generations.models import Generation, GpuHost, SecurityEvent, Worker
from gpu_worker import protocol

log = logging.getLogger(__name__)

USERNAME_PREFIX = "gpu-"
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# A host must not be able to flood the table: repeats within this window add to one row's count.
COALESCE = timedelta(minutes=1)
PROVIDER_OF_KIND = {
    GpuHost.Kind.VERDA_INSTANCE: "verda-instance",
    GpuHost.Kind.VERDA_SERVERLESS: "verda-serverless",
    GpuHost.Kind.RUNPOD: "runpod-serverless",
    GpuHost.Kind.KUBERNETES: "other",
    GpuHost.Kind.LOCAL: "local",
}


class EnrolRefused(Exception):
    pass


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Enrolment:
    host: GpuHost
    secret: str
    environment: dict[str, str]

    @property
    def block(self) -> str:
        """What to paste into the provider for this kind of host (shown once)."""
        return environment_block(self.host, self.environment)


def host_enrol(
    *, name: str, kind: str, note: str = "", by: User | None = None, conn: redis.Redis | None = None
) -> Enrolment:
    """A new host: its row, its Redis ACL user, and the environment its workers need."""
    if not NAME.match(name):
        raise EnrolRefused("A name is 1-40 lower-case letters, digits and hyphens (not at either end).")
    if kind not in GpuHost.Kind.values:
        raise EnrolRefused(f"Unknown kind {kind!r}.")
    conn = conn or connection()
    secret = secrets.token_urlsafe(32)
    username = USERNAME_PREFIX + name
    with transaction.atomic():
        if GpuHost.objects.filter(name=name).exists():
            raise EnrolRefused(f"A GPU host named {name!r} exists already (revoked ones keep their name).")
        host = GpuHost.objects.create(
            name=name,
            username=username,
            kind=kind,
            note=note[:200],
            secret_sha256=secret_hash(secret),
            created_by=by,
        )
        # Inside the transaction: when Redis refuses, no host is left without its user.
        _apply(conn, host)
    log.info("enrolled GPU host %s (%s)", name, kind)
    return Enrolment(host=host, secret=secret, environment=environment(host, secret))


def host_revoke(*, host: GpuHost, by: User | None = None, conn: redis.Redis | None = None) -> bool:
    """Disable a host at once: its Redis user and connections go, its in-flight attempts are
    dispatched again elsewhere, its workers show as revoked. False when it was revoked already."""
    from generations.dispatch.attempts import attempt_lost  # dispatch sits beside fleet

    conn = conn or connection()
    n = GpuHost.objects.filter(pk=host.pk, revoked_at=None).update(revoked_at=timezone.now(), revoked_by=by)
    if n != 1:
        return False
    acl.host_drop(conn, host.username)
    names = [n.decode() for n in conn.smembers(protocol.host_workers_set(host.username))]
    pipe = conn.pipeline()
    pipe.srem(protocol.HOSTS_SET, host.username)
    pipe.delete(protocol.host_workers_set(host.username), *(protocol.worker_key(n) for n in names))
    pipe.execute()
    Worker.objects.filter(host=host).update(state="revoked", current_generation=None)
    for g in Generation.objects.filter(host=host, status__in=Generation.IN_FLIGHT):
        attempt_lost(generation_id=g.pk, attempt=g.attempt, reason=f"its GPU host {host.name} was revoked")
    log.warning("revoked GPU host %s", host.name)
    return True


def _apply(conn: redis.Redis, host: GpuHost) -> None:
    acl.host_apply(
        conn,
        username=host.username,
        secret_sha256=host.secret_sha256,
        queues=settings.RQ_QUEUE_NAMES,
        events_base=settings.EVENTS_STREAM,
    )
    conn.sadd(protocol.HOSTS_SET, host.username)


def hosts_reapply(conn: redis.Redis) -> int:
    """Give every active host its Redis user again where Redis lost it (a restart without the users
    it had); returns how many were re-applied. Cheap enough for every reconcile pass."""
    active = list(GpuHost.objects.filter(revoked_at=None))
    if not active:
        return 0
    present = acl.users(conn)
    missing = [h for h in active if h.username not in present]
    for host in missing:
        _apply(conn, host)
        log.warning("re-applied the Redis user of GPU host %s", host.name)
    conn.sadd(protocol.HOSTS_SET, *(h.username for h in active))
    return len(missing)


def host_authenticate(authorization: str) -> GpuHost | None:
    """The active host an ``Authorization: Basic`` header names, if its secret matches."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        username, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    host = GpuHost.objects.filter(username=username, revoked_at=None).first()
    if host is None or not hmac.compare_digest(secret_hash(secret), host.secret_sha256):
        return None
    return host


def security_event_record(
    *,
    kind: str,
    host: GpuHost | None = None,
    generation_id: int | None = None,
    attempt: int | None = None,
    detail: str = "",
) -> None:
    """Count and log something a host sent that was refused (visible in admin and /metrics)."""
    now = timezone.now()
    log.warning(
        "refused from %s: %s (generation %s attempt %s) %s",
        host.username if host else "?",
        kind,
        generation_id,
        attempt,
        detail[:200],
    )
    recent = SecurityEvent.objects.filter(kind=kind, host=host, last_at__gte=now - COALESCE)
    if recent.update(count=F("count") + 1, last_at=now, detail=detail[:500]) == 0:
        SecurityEvent.objects.create(
            kind=kind,
            host=host,
            generation_id=generation_id,
            attempt=attempt,
            detail=detail[:500],
            last_at=now,
        )


# --- What a host's workers are given -------------------------------------------------------


def worker_redis_url(username: str, secret: str) -> str:
    """WORKER_REDIS_URL (how GPU hosts reach Redis; default: REDIS_URL) with this credential in it."""
    base = settings.WORKER_REDIS_URL or settings.REDIS_URL
    parts = urllib.parse.urlsplit(base)
    netloc = parts.hostname or "127.0.0.1"
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    userinfo = f"{urllib.parse.quote(username, safe='')}:{urllib.parse.quote(secret, safe='')}@"
    return urllib.parse.urlunsplit((parts.scheme, userinfo + netloc, parts.path or "/0", parts.query, ""))


def environment(host: GpuHost, secret: str) -> dict[str, str]:
    from generations.dispatch.signing import verify_key_text  # dispatch sits beside fleet

    env = {
        "REDIS_URL": worker_redis_url(host.username, secret),
        "JOB_VERIFY_KEY": verify_key_text(),
        "GPU_WORKER_PROVIDER": PROVIDER_OF_KIND[GpuHost.Kind(host.kind)],
    }
    if host.kind in (GpuHost.Kind.VERDA_INSTANCE, GpuHost.Kind.LOCAL):
        # One worker per host; several GPUs: GPU_WORKER_NAME=<user>:<gpu index> per unit.
        env["GPU_WORKER_NAME"] = host.username
    return env


def environment_block(host: GpuHost, env: dict[str, str]) -> str:
    if host.kind == GpuHost.Kind.KUBERNETES:
        # The Secret deploy/k8s/gpu-worker.yaml reads: one credential for the whole Deployment.
        literals = [f"--from-literal={k}={shlex.quote(env[k])}" for k in ("REDIS_URL", "JOB_VERIFY_KEY")]
        lines = [*literals, "--from-file=redis-ca.crt=deploy/redis/tls/ca.crt"]
        return "kubectl -n workshop create secret generic gpu-worker \\\n  " + " \\\n  ".join(lines) + "\n"
    where = {
        GpuHost.Kind.VERDA_INSTANCE: "# /etc/workshop/gpu-worker-0.env, or deploy/worker.env for compose",
        GpuHost.Kind.VERDA_SERVERLESS: "# Verda container deployment → Environment variables",
        GpuHost.Kind.RUNPOD: "# RunPod endpoint → Environment Variables",
        GpuHost.Kind.LOCAL: "# the worker's environment",
    }[GpuHost.Kind(host.kind)]
    return where + "\n" + "".join(f"{k}={v}\n" for k, v in env.items())
