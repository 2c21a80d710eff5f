"""Every instructor page, action and live socket: 403 (or a closed socket) for filmmakers, the
login page for anonymous visitors, and nothing changed by either."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import User
from generations.instructor import announcements, briefs
from generations.models import Announcement, Generation, QuotaTopUp, Round, Workshop
from generations.routing import websocket_urlpatterns
from tests.test_instructor import PNG, finish, submit

ROUTES = [
    ("get", "instructor-panel", []),
    ("post", "instructor-workshop", []),
    ("get", "instructor-round-new", []),
    ("post", "instructor-round-new", []),
    ("get", "instructor-round-edit", ["round"]),
    ("post", "instructor-round-edit", ["round"]),
    ("post", "instructor-round-image-delete", ["round", "image"]),
    ("post", "instructor-round-open", ["round"]),
    ("post", "instructor-round-pause", ["round"]),
    ("post", "instructor-burst-go", ["round"]),
    ("post", "instructor-burst-close", ["round"]),
    ("post", "instructor-warm", []),
    ("get", "instructor-round-close", ["round"]),
    ("post", "instructor-round-close", ["round"]),
    ("get", "instructor-room-current", []),
    ("get", "instructor-room", ["round"]),
    ("get", "instructor-takes", ["round"]),
    ("post", "instructor-top-up", ["round", "filmmaker"]),
    ("post", "instructor-spotlight-next", ["round"]),
    ("post", "instructor-cancel", ["generation"]),
    ("post", "instructor-spotlight", ["take"]),
    ("post", "instructor-spotlight-clear", []),
    ("post", "instructor-announce", []),
    ("post", "instructor-announcement-withdraw", ["announcement"]),
    ("get", "instructor-exports", []),
    ("get", "instructor-export-csv", []),
    ("get", "instructor-export-zip", ["filmmaker"]),
    ("get", "screen", []),
    ("get", "accounts-list", []),
    ("post", "accounts-create", []),
    ("post", "accounts-reset", ["filmmaker"]),
    ("post", "accounts-deactivate", ["filmmaker"]),
    ("post", "accounts-activate", ["filmmaker"]),
    ("post", "accounts-unlock", []),
]
SOCKETS = ["/ws/instructor/rounds/{round}/", "/ws/screen/"]


@pytest.fixture
def world(owner, other, open_round, template, generation) -> dict[str, Any]:
    """One of everything an instructor URL names, and the data a POST would act on."""
    take = finish(submit(other, open_round, template), circled=True)
    briefs.brief_image_add(rnd=open_round, upload=SimpleUploadedFile("a.png", PNG))
    announcement = announcements.announcement_create(text="Hello", by=owner)
    ids = {"round": open_round.pk, "filmmaker": other.pk, "generation": generation.pk, "take": take.pk}
    ids |= {"announcement": announcement.pk, "image": "a.png"}
    data = {
        "names": "Zoe",
        "username": "bob",
        "batch": "b",
        "text": "Hi",
        "amount": "2",
        "workers": "2",
        "title": "T",
        "templates": [template.pk],
    }
    data |= {"quota": "3", "circle_limit": "1", "name": "Day", "gpu_budget": "10"}
    return {"ids": ids, "data": data}


def snapshot() -> tuple[object, ...]:
    return (
        list(Round.objects.values_list("title", "status", "burst_opened_at", "burst_closed_at")),
        list(Generation.objects.values_list("pk", "status")),
        list(User.objects.values_list("username", "password", "is_active")),
        list(Announcement.objects.values_list("pk", "active")),
        QuotaTopUp.objects.count(),
        list(Workshop.objects.values_list("name", "spotlight")),
        briefs.brief_images(Round.objects.get()),
    )


def call(client: Client, method: str, name: str, args: list[str], world: dict[str, Any]):
    url = reverse(name, args=[world["ids"][a] for a in args])
    return client.post(url, world["data"]) if method == "post" else client.get(url)


@pytest.mark.parametrize("method, name, args", ROUTES)
def test_it_forbids_filmmakers_every_instructor_page_and_action(
    owner_client, world, method, name, args
) -> None:
    before = snapshot()
    assert call(owner_client, method, name, args, world).status_code == 403
    assert snapshot() == before


@pytest.mark.parametrize("method, name, args", ROUTES)
def test_it_sends_anonymous_visitors_to_the_login_page(world, method, name, args) -> None:
    before = snapshot()
    response = call(Client(), method, name, args, world)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert snapshot() == before


@pytest.mark.parametrize("method, name, args", ROUTES)
def test_it_lets_instructors_in(instructor, world, method, name, args) -> None:
    client = Client()
    client.force_login(instructor)
    assert call(client, method, name, args, world).status_code in (200, 204, 302)


def _names(patterns: list[URLPattern | URLResolver]) -> set[str]:
    found = set()
    for p in patterns:
        if isinstance(p, URLResolver):
            found |= _names(p.url_patterns)
        elif p.name:
            found.add(p.name)
    return found


def test_it_covers_every_instructor_url() -> None:
    import accounts.urls
    import generations.instructor.urls

    names = _names(generations.instructor.urls.urlpatterns + accounts.urls.urlpatterns) - {
        "round-brief-image"
    }
    assert names == {name for _, name, _ in ROUTES} and names <= _names(get_resolver().url_patterns)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
@pytest.mark.parametrize("who", ["filmmaker", "anonymous"])
def test_it_closes_an_instructor_socket_for_anyone_else(owner, open_round, redis_conn, path, who) -> None:
    async def scenario() -> tuple[bool, object]:
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path.format(round=open_round.pk))
        comm.scope["user"] = owner if who == "filmmaker" else AnonymousUser()
        return await comm.connect()

    connected, code = async_to_sync(scenario)()
    assert not connected and code == (4403 if who == "filmmaker" else 4401)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", SOCKETS)
def test_it_opens_an_instructor_socket_for_instructors(instructor, open_round, redis_conn, path) -> None:
    async def scenario() -> str:
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path.format(round=open_round.pk))
        comm.scope["user"] = instructor
        assert (await comm.connect())[0]
        html = await comm.receive_from(timeout=5)
        await comm.disconnect()
        return html

    assert ('id="room-live"' if "instructor" in path else 'id="stage"') in async_to_sync(scenario)()
