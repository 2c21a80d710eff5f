"""The demo workshop: a synthetic template, an open round, an admin, an instructor and three
filmmakers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from generations.models import Round, WorkflowTemplate

# Shaped like a ComfyUI API-format workflow so the same spec machinery resolves it;
# the synthetic backend reads the values from the job's params.
SYNTHETIC_WORKFLOW = {
    "1": {
        "class_type": "SyntheticVideo",
        "inputs": {"prompt": "", "seed": 0, "frames": 25, "width": 320, "height": 192, "fps": 12},
    },
    "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "synthetic"}},
}

SYNTHETIC_SPEC = [
    {
        "name": "prompt",
        "label": "Prompt",
        "type": "text",
        "max": 1000,
        "targets": [["1", "prompt"]],
        "help": "Describe the shot.",
    },
    {
        "name": "seed",
        "label": "Seed",
        "type": "seed",
        "targets": [["1", "seed"]],
        "help": "Leave blank for a random seed.",
    },
    {
        "name": "frames",
        "label": "Frames",
        "type": "int",
        "default": 25,
        "min": 9,
        "max": 121,
        "step": 8,
        "offset": 1,
        "targets": [["1", "frames"]],
        "help": "8k+1 frames, 9 to 121.",
    },
    {
        "name": "width",
        "label": "Width",
        "type": "int",
        "default": 320,
        "min": 64,
        "max": 1280,
        "step": 32,
        "targets": [["1", "width"]],
    },
    {
        "name": "height",
        "label": "Height",
        "type": "int",
        "default": 192,
        "min": 64,
        "max": 720,
        "step": 32,
        "targets": [["1", "height"]],
    },
    {
        "name": "fps",
        "label": "Frames per second",
        "type": "int",
        "default": 12,
        "min": 6,
        "max": 30,
        "targets": [["1", "fps"]],
    },
]


def synthetic_template() -> WorkflowTemplate:
    template, _ = WorkflowTemplate.objects.update_or_create(
        slug="synthetic-video",
        defaults={
            "name": "Synthetic clip",
            "kind": WorkflowTemplate.Kind.VIDEO,
            "description": "A short abstract clip rendered with torch; stands in for a real model.",
            "workflow": SYNTHETIC_WORKFLOW,
            "param_spec": SYNTHETIC_SPEC,
            "queue": "video",
            "estimated_seconds": 5,
        },
    )
    return template


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    role: str


def seed_demo(*, template_slug: str | None = None) -> list[Login]:
    """Create the demo when the database has no users; returns the new logins (empty if it existed).

    Its round offers the synthetic template, or the installed template ``template_slug``."""
    if User.objects.exists():
        return []
    logins: list[Login] = []
    with transaction.atomic():
        people = [("instructor", User.Role.INSTRUCTOR)] + [
            (f"filmmaker{i}", User.Role.FILMMAKER) for i in (1, 2, 3)
        ]
        for username, role in people:
            password = "-".join(secrets.token_hex(2) for _ in range(3))
            User.objects.create_user(
                username=username, password=password, role=role, is_staff=role == User.Role.INSTRUCTOR
            )
            logins.append(Login(username, password, role))
        # The admin (Django's /admin/ in full: users, every table); instructors see their share.
        password = "-".join(secrets.token_hex(2) for _ in range(3))
        User.objects.create_superuser(username="admin", password=password, role=User.Role.INSTRUCTOR)
        logins.insert(0, Login("admin", password, "admin"))
        rnd = Round.objects.create(
            title="Round 1: a single shot",
            brief=(
                "Describe one shot in a sentence: subject, light, camera move. "
                "Submit a few seeds, then keep the best."
            ),
            status=Round.Status.OPEN,
            opened_at=timezone.now(),
            burst_opened_at=timezone.now(),  # opening a round opens its burst window
            quota=15,
            circle_limit=3,
        )
        template = WorkflowTemplate.objects.get(slug=template_slug) if template_slug else synthetic_template()
        rnd.templates.add(template)
    return logins
