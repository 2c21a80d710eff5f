"""Signed jobs: the conductor signs each job with a private Ed25519 key that only the web side holds;
GPU workers verify it with the public key and run nothing that is unsigned, altered or expired.

Both sides import this module (plain Python and ``cryptography``, never Django). The signature
covers the RQ job id, the function's dotted path and every keyword argument but the signature
itself, serialised canonically (sorted keys, no spaces, ASCII, no NaN), plus an expiry time, so a
worker host that edits any of them in Redis, or copies a signed job under another id, gets a job
that no worker runs. It travels as the keyword argument ``SIGNATURE_KWARG``:
``"v1.<expires, unix seconds>.<base64url signature>"``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_KWARG = "job_signature"
VERSION = "v1"
# Rented hosts keep time with NTP; a little slack keeps a slow clock from refusing a fresh job.
CLOCK_SKEW_S = 60


class BadSignature(Exception):
    """The job is unsigned, its signature does not verify, or it expired."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PrivateKey) -> str:
    """The public half as the workers' ``JOB_VERIFY_KEY`` (base64url of the 32 raw bytes)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return _b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    try:
        raw = _b64decode(text.strip())
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise ValueError("JOB_VERIFY_KEY is not a base64url Ed25519 public key (32 bytes)") from None


def _message(job_id: str, function: str, kwargs: dict[str, Any], expires: int) -> bytes:
    body = {k: v for k, v in kwargs.items() if k != SIGNATURE_KWARG}
    document = {"job_id": job_id, "function": function, "kwargs": body, "expires": expires}
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sign(key: Ed25519PrivateKey, *, job_id: str, function: str, kwargs: dict[str, Any], ttl: int) -> str:
    """The value of ``SIGNATURE_KWARG`` for this job, valid for ``ttl`` seconds."""
    expires = int(time.time()) + ttl
    signature = key.sign(_message(job_id, function, kwargs, expires))
    return f"{VERSION}.{expires}.{_b64encode(signature)}"


def verify(
    key: Ed25519PublicKey,
    *,
    job_id: str,
    function: str,
    kwargs: dict[str, Any],
    now: float | None = None,
) -> None:
    """Raise ``BadSignature`` unless ``kwargs[SIGNATURE_KWARG]`` signs exactly this job and is current."""
    token = kwargs.get(SIGNATURE_KWARG)
    if not isinstance(token, str) or not token:
        raise BadSignature("the job is not signed")
    version, _, rest = token.partition(".")
    expires_text, _, signature_text = rest.partition(".")
    if version != VERSION or not expires_text.isdigit() or not signature_text:
        raise BadSignature("the job's signature is malformed")
    expires = int(expires_text)
    try:
        key.verify(_b64decode(signature_text), _message(job_id, function, kwargs, expires))
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        raise BadSignature("the job's signature does not match its content") from None
    if (time.time() if now is None else now) > expires + CLOCK_SKEW_S:
        raise BadSignature("the job's signature has expired")
