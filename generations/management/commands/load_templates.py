from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generations.authoring.library import BUILT_INS, template_install


class Command(BaseCommand):
    help = (
        "Install or update the built-in workflow templates (model-free test clip, LTX-2 text to video) "
        "by slug; safe to run again. They are not added to any round."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for builtin in BUILT_INS:
            try:
                template, action = template_install(builtin)
            except ValidationError as exc:
                raise CommandError(f"{builtin.slug}: {'; '.join(exc.messages)}") from exc
            self.stdout.write(f"{action:<9} {template.slug} ({template.name}, queue {template.queue})")
