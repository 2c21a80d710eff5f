"""Sessions (accounts.sessions, Django's database sessions read without the ORM) behave as Django's:
a login lasts across requests and sockets' handshakes, and an expired, unknown or logged-out session
is no login."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.sessions import SessionStore


def round_page(client: Client, rnd) -> int:  # type: ignore[no-untyped-def]
    return client.get(reverse("round", args=[rnd.pk])).status_code


def test_it_keeps_a_login_until_logout(owner_client, open_round) -> None:
    assert round_page(owner_client, open_round) == 200
    assert round_page(owner_client, open_round) == 200
    owner_client.post(reverse("logout"))
    assert round_page(owner_client, open_round) == 302  # to the login page
    assert not Session.objects.exists()


def test_it_forgets_an_expired_session(owner_client, open_round) -> None:
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert round_page(owner_client, open_round) == 302


def test_it_treats_a_key_it_does_not_know_as_no_session(client, open_round) -> None:
    client.cookies["sessionid"] = "k" * 32
    assert round_page(client, open_round) == 302
    store = SessionStore("k" * 32)
    assert store.load() == {} and store.session_key is None  # a new one is made if written


def test_it_reads_what_was_written(db) -> None:
    store = SessionStore()
    store["shot"] = "a harbour at dawn"
    store.save()
    assert SessionStore(store.session_key).load() == {"shot": "a harbour at dawn"}
