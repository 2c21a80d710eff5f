from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A workshop participant. Admins are superusers; everyone else has a role."""

    class Role(models.TextChoices):
        FILMMAKER = "filmmaker", "Filmmaker"
        INSTRUCTOR = "instructor", "Instructor"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.FILMMAKER)

    @property
    def is_instructor(self) -> bool:
        return self.role == self.Role.INSTRUCTOR or self.is_superuser

    def __str__(self) -> str:
        return self.get_full_name() or self.username
