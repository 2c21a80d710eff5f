"""The conductor's side of signed jobs (``gpu_worker.signing``): the private key, which only the web
side holds, and the public key that every enrolled host is given as ``JOB_VERIFY_KEY``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gpu_worker import protocol, signing

_keys: dict[str, Ed25519PrivateKey] = {}


def signing_key() -> Ed25519PrivateKey:
    """JOB_SIGNING_KEY (base64url of a 32-byte seed), or a key derived from SECRET_KEY so that a
    deployment has one without another secret to keep."""
    configured = settings.JOB_SIGNING_KEY
    source = configured or "secret:" + settings.SECRET_KEY
    if source not in _keys:
        if configured:
            try:
                seed = base64.urlsafe_b64decode(configured + "=" * (-len(configured) % 4))
            except ValueError:
                seed = b""
            if len(seed) != 32:
                raise ImproperlyConfigured("JOB_SIGNING_KEY must be base64url of 32 random bytes")
        else:
            seed = hmac.new(settings.SECRET_KEY.encode(), b"workshop job signing v1", hashlib.sha256).digest()
        _keys[source] = signing.private_key_from_seed(seed)
    return _keys[source]


def verify_key_text() -> str:
    """What workers are given as JOB_VERIFY_KEY."""
    return signing.public_key_text(signing_key())


def job_sign(*, job_id: str, kwargs: dict[str, Any]) -> str:
    return signing.sign(
        signing_key(),
        job_id=job_id,
        function=protocol.JOB_FUNCTION,
        kwargs=kwargs,
        ttl=settings.JOB_SIGNATURE_MAX_AGE,
    )
