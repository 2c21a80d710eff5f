"""Who a socket belongs to. channels' AuthMiddleware reads the session and the user on the one thread
that thread-sensitive code shares, so a burst of handshakes queues there behind each other (and
behind every other synchronous consumer); this reads them on a worker thread of their own."""

from __future__ import annotations

from typing import Any

from channels import auth
from channels.sessions import CookieMiddleware, SessionMiddleware

from generations.live.threads import on_a_thread


class AuthMiddleware(auth.AuthMiddleware):
    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        scope["user"]._wrapped = await on_a_thread(auth.get_user.func)(scope)


def AuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - channels' name, a drop-in for it
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))
