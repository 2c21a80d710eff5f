"""Two defences Django and Channels do not give as we need them: the Permissions-Policy header,
and WebSocket origins checked exactly (scheme, host and port)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.utils.deprecation import MiddlewareMixin

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


class PermissionsPolicyMiddleware(MiddlewareMixin):
    """Adds settings.PERMISSIONS_POLICY to every response that has none of its own."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if settings.PERMISSIONS_POLICY:
            response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


def origin_parse(text: str) -> Origin | None:
    """("https", "host", 443) from "https://host"; None for anything that is not an origin."""
    try:
        parts = urlsplit(text.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin the browser opened this socket on: its Host (one of ALLOWED_HOSTS), with https
    when the connection is secure (or the TLS proxy says it was), as Django's CSRF check has it."""
    host = _header(scope, b"host")
    if not host or not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        return None
    secure = scope.get("scheme") in ("wss", "https")
    if not secure and settings.SECURE_PROXY_SSL_HEADER:
        name, value = settings.SECURE_PROXY_SSL_HEADER
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        secure = (_header(scope, header) or "").split(",")[0].strip() == value
    return origin_parse(f"{'https' if secure else 'http'}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    given = origin_parse(_header(scope, b"origin") or "")
    if given is None:
        return False
    trusted = {origin_parse(o) for o in settings.CSRF_TRUSTED_ORIGINS if "*" not in o}
    return given == own_origin(scope) or given in trusted


class ExactOriginValidator:
    """Opens a WebSocket only for a page of our own origin, or of one of CSRF_TRUSTED_ORIGINS
    (exact entries), compared on scheme, host and port. Channels' AllowedHostsOriginValidator
    compares the host alone, so a page served on another port of the same host could open our
    sockets with the user's session cookie (cookies do not depend on the port)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
