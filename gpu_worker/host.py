"""Who this worker is to the workshop: the credential of its GPU host, read from ``REDIS_URL``.

A host enrolled by an admin gets one Redis ACL user (``gpu-<name>``) and its secret; the same pair
authenticates its uploads (HTTP Basic). The ACL lets that user write only under its own name:
heartbeats ``workshop:worker:<user>`` or ``<user>:<suffix>``, the set ``workshop:workers:<user>``,
the events stream ``workshop:events:<user>`` (see ``protocol``). Without a user in the URL (a local
Redis with no ACLs) the worker writes the shared names as before.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from gpu_worker import protocol


@dataclass(frozen=True)
class Credential:
    username: str
    secret: str


def credential_from_url(redis_url: str) -> Credential | None:
    """The ACL user and its secret in ``redis[s]://user:secret@host...``; None for no user or ``default``."""
    parts = urllib.parse.urlsplit(redis_url)
    username = urllib.parse.unquote(parts.username or "")
    if not username or username == "default":
        return None
    return Credential(username, urllib.parse.unquote(parts.password or ""))


def worker_name(name: str, credential: Credential | None) -> str:
    """``name`` within the credential's namespace: the ACL only lets a host write under its user."""
    if credential is None or protocol.in_namespace(name, credential.username):
        return name
    return f"{credential.username}:{name}" if name else credential.username


def events_stream(stream: str, credential: Credential | None) -> str:
    """The stream this worker appends to: its host's own when it has a credential."""
    if credential is None or stream != protocol.EVENTS_STREAM:
        return stream
    return protocol.host_events_stream(credential.username)


def workers_set(credential: Credential | None) -> str:
    return protocol.WORKERS_SET if credential is None else protocol.host_workers_set(credential.username)
