"""Accounts for a workshop: filmmakers in bulk, login cards, password resets, deactivation."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import authenticate
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import User
from tests.conftest import make_user


@pytest.fixture
def instructor_client(instructor: User) -> Client:
    client = Client()
    client.force_login(instructor)
    return client


def create(client: Client, names: str, batch: str = "b1"):
    return client.post(reverse("accounts-create"), {"names": names, "batch": batch})


def test_it_creates_filmmakers_in_bulk_and_prints_their_cards(instructor_client) -> None:
    response = create(instructor_client, "Ana López\n\n  Ben   Okafor \nChloé Martin\n")
    html = response.content.decode()
    passwords = re.findall(r'class="card-password">([^<]+)<', html)
    assert response.status_code == 200 and len(passwords) == 3 and response["Cache-Control"] == "no-store"
    assert set(User.objects.filter(role="filmmaker").values_list("username", flat=True)) == {
        "ana",
        "ben",
        "chloe",
    }
    assert authenticate(username="ben", password=passwords[1]).get_full_name() == "Ben Okafor"
    assert "/accounts/login/" in html


def test_it_generates_distinct_usernames(db) -> None:
    make_user("ana")
    taken = {"ana"}
    names = ["Ana López", "Ana Lima", "Ana", "José Ruiz", "李 小龙", "  "]
    assert [services.username_for(n, taken) for n in names] == [
        "ana.lopez",
        "ana.lima",
        "ana2",
        "jose",
        "filmmaker",
        "filmmaker2",
    ]


def test_it_generates_readable_passwords_that_differ() -> None:
    passwords = {services.password_generate() for _ in range(50)}
    assert len(passwords) == 50 and all(re.fullmatch(r"([a-z]{4}-){4}\d\d", p) for p in passwords)


def test_it_creates_nothing_twice_when_the_cards_page_is_posted_again(instructor_client) -> None:
    create(instructor_client, "Ana\nBen")
    response = create(instructor_client, "Ana\nBen")
    assert response.status_code == 302 and User.objects.filter(role="filmmaker").count() == 2


def test_it_refuses_an_empty_list(instructor_client) -> None:
    response = create(instructor_client, "\n  \n")
    assert response.status_code == 302 and not User.objects.filter(role="filmmaker").exists()


def test_it_resets_a_password_and_shows_the_new_card(instructor_client, owner) -> None:
    response = instructor_client.post(reverse("accounts-reset", args=[owner.pk]))
    [password] = re.findall(r'class="card-password">([^<]+)<', response.content.decode())
    assert authenticate(username="alice", password=password) == owner
    assert authenticate(username="alice", password="pw-for-tests-1") is None


def test_it_deactivates_and_reactivates_a_filmmaker(
    instructor_client, owner, owner_client, open_round
) -> None:
    instructor_client.post(reverse("accounts-deactivate", args=[owner.pk]))
    assert not User.objects.get(pk=owner.pk).is_active
    assert owner_client.get(reverse("round", args=[open_round.pk])).status_code == 302  # logged out
    instructor_client.post(reverse("accounts-activate", args=[owner.pk]))
    assert User.objects.get(pk=owner.pk).is_active


def test_it_never_touches_an_instructors_or_an_admins_account(instructor_client, db) -> None:
    admin = User.objects.create_superuser("root", password="x-long-password")
    colleague = make_user("ida", role=User.Role.INSTRUCTOR)
    for user in (admin, colleague):
        assert instructor_client.post(reverse("accounts-deactivate", args=[user.pk])).status_code == 404
        assert instructor_client.post(reverse("accounts-reset", args=[user.pk])).status_code == 404


def test_it_lists_the_filmmakers(instructor_client, owner, other) -> None:
    html = instructor_client.get(reverse("accounts-list")).content.decode()
    assert (
        f'id="account-{owner.pk}"' in html and f'id="account-{other.pk}"' in html and 'name="batch"' in html
    )


def test_it_warns_before_a_second_account_for_the_same_name(instructor_client) -> None:
    make_user("ana", first_name="Ana", last_name="López")
    response = create(instructor_client, "ana  lópez\nBen Okafor\nBen Okafor")
    html = response.content.decode()
    assert response.status_code == 409 and "second account" in html and "Ben Okafor" in html
    assert not User.objects.filter(username__startswith="ben").exists()


def test_it_creates_a_repeated_name_once_asked_to_and_tells_the_cards_apart(instructor_client) -> None:
    response = instructor_client.post(
        reverse("accounts-create"), {"names": "Ben Okafor\nBen Okafor", "batch": "b2", "repeats": "create"}
    )
    html = response.content.decode()
    assert response.status_code == 200 and "(ben)" in html and "(ben.okafor)" in html


def test_it_prints_a_qr_code_of_the_login_page_on_each_card(instructor_client) -> None:
    html = create(instructor_client, "Ana López").content.decode()
    assert html.count("<svg") == 1 and 'class="login-qr"' in html and 'class="card-url' in html


def test_it_gives_instructors_the_admin_they_need_and_no_more(instructor_client) -> None:
    assert instructor_client.get("/admin/generations/workflowtemplate/").status_code == 200
    assert instructor_client.get("/admin/generations/round/").status_code == 200
    assert instructor_client.get("/admin/accounts/user/").status_code == 200  # to look up a login
    assert instructor_client.get("/admin/accounts/user/add/").status_code == 403
