from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from generations.authoring.demo import seed_demo


class Command(BaseCommand):
    help = "Create the demo workshop (template, open round, users) when the database has no users."

    def handle(self, *args: Any, **options: Any) -> None:
        logins = seed_demo()
        if not logins:
            self.stdout.write("Users exist already; nothing seeded.")
        for login in logins:
            self.stdout.write(f"{login.role:<11} {login.username:<12} {login.password}")
