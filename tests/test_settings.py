from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.live import ROOT
from workshop.settings import envbool, envint

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x" * 20 + "a-long-random-production-key-0123456789",
    "ALLOWED_HOSTS": "workshop.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
}
LOOSENED = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in LOOSENED and k != "SECRET_KEY"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True
    )


def test_it_passes_the_deploy_checks_with_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_to_start_without_a_secret_key_in_production() -> None:
    env = {**PRODUCTION, "SECRET_KEY": ""}
    web = subprocess.run(
        [sys.executable, "-c", "import workshop.asgi"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert web.returncode != 0 and "SECRET_KEY must be set" in web.stderr
    conductor = manage("conductor", **env)
    assert conductor.returncode != 0 and "SECRET_KEY must be set" in conductor.stderr
    assert manage("check", "--deploy", "--fail-level", "WARNING", **env).returncode != 0


def test_it_runs_commands_that_sign_nothing_without_a_secret_key() -> None:
    result = manage("makemigrations", "--check", "--dry-run", **{**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_a_bad_boolean(monkeypatch) -> None:
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        envbool("FLAG", False)


def test_it_refuses_a_bad_integer(monkeypatch) -> None:
    monkeypatch.setenv("COUNT", "ten")
    with pytest.raises(ImproperlyConfigured, match="COUNT"):
        envint("COUNT", 1)


def test_it_takes_an_empty_variable_as_unset() -> None:
    # `DATABASE_URL=` in a .env file: the embedded database, not "no scheme" at import.
    result = manage("check", **{**PRODUCTION, "DATABASE_URL": "", "REDIS_URL": ""})
    assert result.returncode == 0, result.stdout + result.stderr
