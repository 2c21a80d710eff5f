"""Login throttling (django-axes): a username is locked after LOGIN_FAILURE_LIMIT wrong passwords,
on our login page and the admin's; the page says when to try again; an instructor unlocks it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.conftest import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-1"  # make_user's


def log_in(client: Client, username: str, password: str, url: str = "/accounts/login/"):  # type: ignore[no-untyped-def]
    return client.post(url, {"username": username, "password": password})


def fail(username: str, times: int, url: str = "/accounts/login/") -> None:
    """`times` wrong passwords: the form says so, and the one that reaches the limit locks."""
    for i in range(1, times + 1):
        expected = 429 if i >= settings.AXES_FAILURE_LIMIT else 200
        assert log_in(Client(), username, "wrong-password", url).status_code == expected


def test_it_allows_the_limit_of_wrong_passwords(owner) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(Client(), "alice", PASSWORD).status_code == 302


def test_it_refuses_even_the_right_password_once_locked(owner) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    client = Client()
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429 and "_auth_user_id" not in client.session


def test_it_says_when_to_try_again(owner) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    response = log_in(Client(), "alice", PASSWORD)
    until = timezone.localtime(timezone.now() + settings.AXES_COOLOFF_TIME)
    html = response.content.decode()
    assert (
        f"Try again at {until:%H:%M}" in html or f"Try again at {until - timedelta(minutes=1):%H:%M}" in html
    )
    assert "ask the instructor to unlock it" in html
    assert 0 < int(response["Retry-After"]) <= settings.AXES_COOLOFF_TIME.total_seconds()


def test_it_does_not_extend_the_lockout_on_more_tries(owner) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    before = AccessAttempt.objects.get().attempt_time
    log_in(Client(), "alice", "another-wrong-one")
    assert AccessAttempt.objects.get().attempt_time == before


def test_it_locks_the_admins_login_too() -> None:
    make_user("root", is_staff=True, is_superuser=True)
    fail("root", settings.AXES_FAILURE_LIMIT, url="/admin/login/")
    client = Client()
    assert log_in(client, "root", PASSWORD, url="/admin/login/").status_code == 429
    assert client.get("/admin/").status_code == 302  # still not logged in


def test_it_locks_one_username_not_the_room(owner, other) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    assert log_in(Client(), "bob", PASSWORD).status_code == 302  # same address, another username


def test_it_forgets_failures_after_a_good_login(owner) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(Client(), "alice", PASSWORD).status_code == 302
    fail("alice", settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(Client(), "alice", PASSWORD).status_code == 302


def test_it_lets_in_again_after_the_lockout(owner) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    )
    assert log_in(Client(), "alice", PASSWORD).status_code == 302


def test_it_shows_the_instructor_who_is_locked_out(owner, instructor) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    client = Client()
    client.force_login(instructor)
    html = client.get("/instructor/accounts/").content.decode()
    assert 'id="lockouts"' in html and "locked until" in html


def test_it_lets_an_instructor_unlock_an_account(owner, instructor) -> None:
    fail("alice", settings.AXES_FAILURE_LIMIT)
    client = Client()
    client.force_login(instructor)
    response = client.post("/instructor/accounts/unlock", {"username": "alice"}, follow=True)
    assert "alice can log in again now." in response.content.decode()
    assert log_in(Client(), "alice", PASSWORD).status_code == 302


def test_it_lets_no_filmmaker_unlock_anyone(owner, other) -> None:
    fail("bob", settings.AXES_FAILURE_LIMIT)
    client = Client()
    client.force_login(owner)
    assert client.post("/instructor/accounts/unlock", {"username": "bob"}).status_code == 403
    assert log_in(Client(), "bob", PASSWORD).status_code == 429
