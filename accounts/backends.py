"""The login throttle in front of Django's ModelBackend."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesBackend
from django.http import HttpRequest


class LoginThrottle(AxesBackend):
    """django-axes' check: a username locked out after too many wrong passwords is refused before
    its password is checked (ModelBackend, next in AUTHENTICATION_BACKENDS, checks it). Every login
    over HTTP (ours, the admin's) passes its request; a call without one (the shell, a test) comes
    from no client that could be throttled, and is let through to the next backend instead of failing.

    AxesBackend rather than the standalone one: it also reads users back (get_user), so a session
    that names the first backend, as Django's test client and our tests' sessions do, still works."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)


def throttled_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The username the throttle counts failures against (settings.AXES_USERNAME_CALLABLE).

    Django's login form checks no length, so a 100 kB username reaches the failure record (255
    characters) unless cut here; no account's name is longer than 150, so nothing real collides."""
    source = credentials or getattr(request, "data", request.POST)
    name = source.get("username") if source else None
    return None if name is None else str(name).replace("\x00", "")[:255]
