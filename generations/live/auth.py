"""Who a socket belongs to. channels' AuthMiddleware reads the session and the user before the
consumer runs, on the one thread that thread-sensitive code shares: a burst of handshakes queues
there (behind each other and every synchronous consumer) past daphne's 5 s connect timeout. Here
scope["user"] is read from the session the first time a consumer looks at it, which it does on its
worker thread (live.threads.on_a_thread) in the same hop as the rest of what it reads to connect:
one hop per handshake, so each completes in turn instead of all at the end of the burst. Looking at
it on the event loop fails loudly (Django refuses database access there)."""

from __future__ import annotations

import functools
from typing import Any

from channels import auth
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.utils.functional import SimpleLazyObject


class AuthMiddleware(auth.AuthMiddleware):
    def populate_scope(self, scope: dict[str, Any]) -> None:
        if "session" not in scope:
            raise ValueError("AuthMiddleware needs SessionMiddleware above it")
        scope.setdefault("user", SimpleLazyObject(functools.partial(auth.get_user.func, scope)))

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        """Nothing yet: see the module's docstring."""


def AuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - channels' name, a drop-in for it
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))
