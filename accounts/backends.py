"""Authentication backends: the login throttle in front of Django's ModelBackend, and what
instructors may do in Django's admin."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesBackend
from django.contrib.auth.backends import BaseBackend
from django.http import HttpRequest

# What instructors may do in Django's admin: run the day's templates, rounds and announcements, and
# look at (never edit) everything else they need. They get it from their role, so a new instructor
# account needs no group or permission set by hand; admins (superusers) keep everything. User accounts
# stay view-only: editing one could make anyone a superuser.
# app label -> model -> the actions an instructor may take in the admin.
INSTRUCTOR_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "generations": {
        "workflowtemplate": ("view", "add", "change"),
        "round": ("view", "change"),
        "announcement": ("view", "add", "change"),
        "workshop": ("view", "change"),
        "generation": ("view",),
        "take": ("view",),
        "quotatopup": ("view",),
        "worker": ("view",),
    },
    "accounts": {"user": ("view",)},
}


def instructor_permissions() -> set[str]:
    return {
        f"{app}.{action}_{model}"
        for app, models in INSTRUCTOR_PERMISSIONS.items()
        for model, actions in models.items()
        for action in actions
    }


class InstructorBackend(BaseBackend):
    """Authenticates nobody (ModelBackend does); only answers for an active instructor's role."""

    def _applies(self, user: Any) -> bool:
        return bool(
            getattr(user, "is_active", False)
            and getattr(user, "is_staff", False)
            and getattr(user, "role", "") == "instructor"
        )

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return instructor_permissions() if self._applies(user_obj) and obj is None else set()

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return self._applies(user_obj) and app_label in INSTRUCTOR_PERMISSIONS


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
