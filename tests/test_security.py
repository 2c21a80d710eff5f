"""The browser side's defences that a request shows: the Content Security Policy and the
Permissions-Policy, cookies and caching, the operators' token, error pages, exact WebSocket
origins, templates free of inline code, and the demo's own SECRET_KEY."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.conftest import make_user
from tests.live import ROOT
from workshop.local_secret import local_secret_key
from workshop.security import origin_allowed

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    policy = response["Content-Security-Policy"]
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in policy.split(";")) if d}


def test_it_sends_a_strict_content_security_policy(client) -> None:
    csp = directives(client.get("/accounts/login/"))
    assert csp["default-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'" and csp["object-src"] == "'none'"
    assert "unsafe" not in " ".join(csp.values())


def test_it_adds_a_nonce_where_a_page_uses_one() -> None:
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    response = client.get("/admin/generations/round/")  # the admin's change list has a nonced <style>
    nonce = re.search(r"'nonce-([^']+)'", directives(response)["style-src"]).group(1)  # type: ignore[union-attr]
    assert f'nonce="{nonce}"' in response.content.decode()


def test_it_sends_a_permissions_policy(client) -> None:
    policy = client.get("/accounts/login/")["Permissions-Policy"]
    assert "camera=()" in policy and "microphone=()" in policy and "geolocation=()" in policy


def test_it_keeps_the_csrf_cookie_from_scripts(client) -> None:
    response = client.get("/accounts/login/")
    assert response.cookies["csrftoken"]["httponly"] is True


def test_it_keeps_my_prompts_out_of_every_cache(owner_client, generation) -> None:
    response = owner_client.get("/gallery/generations.csv")
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"


def test_it_keeps_everyones_prompts_out_of_every_cache(instructor, generation) -> None:
    client = Client()
    client.force_login(instructor)
    response = client.get("/instructor/exports/generations.csv")
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"


def test_it_requires_the_bearer_prefix_on_the_operators_api(client, settings) -> None:
    settings.OPERATOR_API_TOKEN = "op-token-123"
    assert client.get("/api/queue/status", HTTP_AUTHORIZATION="op-token-123").status_code == 401
    assert client.get("/api/queue/status", HTTP_AUTHORIZATION="Basic op-token-123").status_code == 401
    assert client.get("/api/queue/status", HTTP_AUTHORIZATION="Bearer op-token-123").status_code == 200


def test_it_has_no_password_reset_pages(client) -> None:
    for url in (
        "/accounts/password_reset/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/password_change/",
    ):
        assert client.get(url).status_code == 404


def test_it_shows_a_filmmaker_a_styled_403_with_the_way_back_to_the_round(owner_client) -> None:
    response = owner_client.get("/instructor/")
    html = response.content.decode()
    assert response.status_code == 403 and 'id="error-403"' in html and 'class="topbar"' in html
    assert 'href="/">Back to your round</a>' in html


def test_it_shows_an_instructor_a_styled_404_with_the_way_back_to_the_panel(instructor) -> None:
    client = Client()
    client.force_login(instructor)
    response = client.get("/rounds/999999/")
    html = response.content.decode()
    assert response.status_code == 404 and 'id="error-404"' in html
    assert 'href="/instructor/">Back to the instructor' in html


def test_it_explains_an_expired_form(owner) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post("/gallery/takes/1/note", {"note": "x"})
    assert response.status_code == 403 and 'id="error-403-csrf"' in response.content.decode()


# --- WebSocket origins -----------------------------------------------------------------------


def scope(origin: str | None, host: str = "127.0.0.1:8000", scheme: str = "ws") -> dict:
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    "origin, host, scheme, allowed",
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", "ws", False),  # another port of the same host
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws", False),  # another scheme
        ("http://localhost:8000", "127.0.0.1:8000", "ws", False),  # another host
        ("http://127.0.0.1", "127.0.0.1", "ws", True),
        ("http://127.0.0.1:80", "127.0.0.1", "ws", True),  # the default port, written out
        ("https://localhost", "localhost", "wss", True),
        ("http://localhost", "localhost", "wss", False),
        ("http://evil.example:8000", "evil.example:8000", "ws", False),  # not in ALLOWED_HOSTS
        ("null", "127.0.0.1:8000", "ws", False),
        (None, "127.0.0.1:8000", "ws", False),
    ],
)
def test_it_checks_websocket_origins_exactly(origin, host, scheme, allowed) -> None:
    assert origin_allowed(scope(origin, host, scheme)) is allowed


def test_it_accepts_the_trusted_origins_exactly(settings) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://workshop.example.com"]
    assert origin_allowed(scope("https://workshop.example.com", "127.0.0.1:8000"))
    assert not origin_allowed(scope("https://workshop.example.com:8443", "127.0.0.1:8000"))
    assert not origin_allowed(scope("http://workshop.example.com", "127.0.0.1:8000"))


def test_it_trusts_the_tls_proxy_only_when_told_to(settings) -> None:
    proxied = scope("https://localhost", "localhost")
    proxied["headers"].append((b"x-forwarded-proto", b"https"))
    assert not origin_allowed(proxied)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(proxied)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin, opened", [("http://127.0.0.1:8000", True), ("http://127.0.0.1:9999", False)]
)
def test_it_opens_a_round_socket_only_for_its_own_origin(
    owner, open_round, redis_conn, origin, opened
) -> None:
    from workshop.asgi import application

    async def scenario() -> bool:
        comm = WebsocketCommunicator(
            application,
            f"/ws/rounds/{open_round.pk}/",
            headers=[(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())],
        )
        comm.scope["user"] = owner
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert async_to_sync(scenario)() is opened


# --- Templates: nothing the policy would block --------------------------------------------------

TEMPLATE_DIRS = [ROOT / "templates", ROOT / "generations" / "templates"]
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "an inline <style>"),
    (re.compile(r"\sstyle=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+=", re.I), "an inline event handler"),
    (re.compile(r"\shx-on[:-]", re.I), "an hx-on handler (htmx would need eval)"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_it_keeps_inline_code_out_of_every_template() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {what}"
        for folder in TEMPLATE_DIRS
        for path in folder.rglob("*.html")
        for pattern, what in INLINE
        if pattern.search(path.read_text())
    ]
    assert found == []


def test_it_gives_form_widgets_no_style_attribute() -> None:
    from generations.authoring.import_forms import FieldForm

    html = str(FieldForm(target_choices=[]))
    assert "style=" not in html


# --- The demo's SECRET_KEY ---------------------------------------------------------------------


def test_it_makes_the_demo_key_once_and_keeps_it_private(tmp_path: Path) -> None:
    key = local_secret_key(tmp_path)
    assert len(key) >= 50 and local_secret_key(tmp_path) == key
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert local_secret_key(tmp_path / "other") != key


def test_it_signs_the_demo_with_its_own_key_not_a_public_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(DEBUG="true", WORKSHOP_LOCAL_DIR=str(tmp_path))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "workshop.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (tmp_path / "secret_key").read_text().strip()
    assert "insecure" not in result.stdout
