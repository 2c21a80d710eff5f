"""What instructors may do in Django's admin: run the day's templates, rounds and announcements,
and look at (never edit) everything else they need. They get it from their role, so a new
instructor account needs no group or permission set by hand; admins (superusers) keep everything.
User accounts stay view-only: editing one could make anyone a superuser."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend

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
