"""No 500 on any input. Every POST endpoint and form (and the GET forms) is fed by Hypothesis with
hostile values: NUL, lone surrogates (as the invalid UTF-8 a browser could send, and as JSON
escapes), CR/LF, 100 kB strings, huge and non-finite numbers, deep JSON, digits that are not ASCII,
and other people's (or no one's) ids. Each answer must be a 2xx, 3xx or 4xx, a 4xx must say
something, and a refused request (4xx, or a redirect with a warning or an error message) must leave
the database as it was.

Bounded and deterministic by default (CI); FUZZ_EXAMPLES=200 FUZZ_RANDOM=1 explores further."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.messages import constants
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import User
from generations.instructor import announcements
from generations.models import (
    Announcement,
    Generation,
    QuotaTopUp,
    Round,
    Take,
    Worker,
    WorkflowTemplate,
    Workshop,
)
from tests.conftest import make_user
from tests.test_instructor import finish, submit

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "10")),
    deadline=None,
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

HUGE = "x" * 100_000
HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\r\n",
    "one\r\ntwo\rthree\n",
    "²",
    "٣",
    "1²",
    "9" * 4400,
    "-1",
    "0",
    "1",
    "2",
    "3",
    "1.5",
    "1e999",
    "-1e999",
    "Infinity",
    "-Infinity",
    "NaN",
    "9223372036854775808",
    "9" * 30,
    "[" * 5000 + "]" * 5000,
    '{"a": ' * 2000 + "1" + "}" * 2000,
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202e\u200b",
    "😀",
    "on",
    "true",
    "2026-13-45",
    HUGE,
]
# Short pieces joined, so that one value can hold several at once ("²\x00Infinity").
PIECES = [
    "\x00",
    "\ud800",
    "\r\n",
    "²",
    "٣",
    "Infinity",
    "NaN",
    "1e999",
    "-1",
    "0",
    "7",
    "9" * 30,
    "😀",
    "\u202e",
    "a",
]
text = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join),
    st.text(st.characters(categories=["L", "N", "P", "S", "Z", "Cc", "Cs", "Cf"]), max_size=30),
    st.integers().map(str),
    st.floats().map(str),
)
HUGE_IDS = [0, 999_999, 2**31, 2**63, 10**30]
THEIR_TOKEN = "6a1f0b7e-2b0c-4f43-9d1e-0c0e2c6f1a11"


def form_body(fields: dict[str, str]) -> str:
    """A urlencoded form body: a lone surrogate goes as the invalid UTF-8 bytes a client could send."""
    return urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in fields.items()])


def post_form(client: Client, path: str, fields: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        path, form_body(fields), content_type="application/x-www-form-urlencoded", headers=headers
    )


def sendable(value: str) -> str:
    return value.encode("utf-8", "replace").decode()


# --- The world: one of everything an endpoint names -------------------------------------------


@pytest.fixture
def world(owner, other, instructor, open_round, template) -> dict[str, Any]:
    mine = finish(submit(owner, open_round, template))
    theirs = finish(submit(other, open_round, template), circled=True)
    failed = submit(owner, open_round, template)
    Generation.objects.filter(pk=failed.pk).update(status=Generation.Status.FAILED, retriable=True)
    announcement = announcements.announcement_create(text="Hello", by=instructor)
    Generation.objects.filter(pk=theirs.generation_id).update(submit_token=THEIR_TOKEN)
    admin = make_user("root", is_staff=True, is_superuser=True)
    return {
        "round": open_round.pk,
        "template": template.pk,
        "my_generation": mine.generation_id,
        "their_generation": theirs.generation_id,
        "failed": failed.pk,
        "my_take": mine.pk,
        "their_take": theirs.pk,
        "filmmaker": other.pk,
        "me": owner.pk,
        "announcement": announcement.pk,
        "users": {"filmmaker": owner, "instructor": instructor, "admin": admin},
    }


def state() -> list[Any]:
    """Every row a request could change (sessions and the login throttle's records aside)."""
    models: list[type[Model]] = [
        Generation,
        Take,
        Round,
        WorkflowTemplate,
        QuotaTopUp,
        Workshop,
        Announcement,
    ]
    rows: list[Any] = [list(m.objects.order_by("pk").values()) for m in [*models, Worker]]
    rows.append(list(User.objects.order_by("pk").values_list("username", "password", "is_active", "role")))
    rows.append(list(Round.templates.through.objects.order_by("pk").values_list()))
    rows.append(list(Round.filmmakers.through.objects.order_by("pk").values_list()))
    return rows


# --- The endpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    who: str  # filmmaker, instructor, admin, anonymous
    path: Callable[[dict[str, Any], Any], str]  # (world, an id drawn for the URL) -> path
    fields: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()  # world keys an URL id is drawn from (with HUGE_IDS)
    url_texts: tuple[str, ...] = ()  # or the texts an URL part is drawn from
    method: str = "post"
    files: tuple[str, ...] = ()


ENDPOINTS = [
    Endpoint(
        "submit",
        "filmmaker",
        lambda w, i: f"/rounds/{i}/generate",
        ("template", "prompt", "seed", "frames", "width", "height", "fps", "submit_token", "priority"),
        ids=("round",),
    ),
    Endpoint(
        "cancel",
        "filmmaker",
        lambda w, i: f"/generations/{i}/cancel",
        ids=("my_generation", "their_generation"),
    ),
    Endpoint(
        "retry", "filmmaker", lambda w, i: f"/generations/{i}/retry", ids=("failed", "their_generation")
    ),
    Endpoint(
        "circle",
        "filmmaker",
        lambda w, i: f"/gallery/takes/{i}/circle",
        ("circled",),
        ids=("my_take", "their_take"),
    ),
    Endpoint(
        "note", "filmmaker", lambda w, i: f"/gallery/takes/{i}/note", ("note",), ids=("my_take", "their_take")
    ),
    Endpoint("login", "anonymous", lambda w, i: "/accounts/login/", ("username", "password", "next")),
    Endpoint("admin-login", "anonymous", lambda w, i: "/admin/login/", ("username", "password", "next")),
    Endpoint(
        "gallery", "filmmaker", lambda w, i: "/gallery/", ("round", "circled", "sort", "after"), method="get"
    ),
    Endpoint("compare", "filmmaker", lambda w, i: "/gallery/compare", ("t", "t"), method="get"),
    Endpoint("zip", "filmmaker", lambda w, i: "/gallery/circled.zip", ("round",), method="get"),
    Endpoint(
        "remix",
        "filmmaker",
        lambda w, i: f"/gallery/takes/{i}/remix",
        ("seed",),
        ids=("my_take",),
        method="get",
    ),
    Endpoint(
        "round-page",
        "filmmaker",
        lambda w, i: f"/rounds/{i}/",
        ("template", "prompt", "seed", "frames"),
        ids=("round",),
        method="get",
    ),
    Endpoint("announce", "instructor", lambda w, i: "/instructor/announcements", ("text",)),
    Endpoint(
        "withdraw",
        "instructor",
        lambda w, i: f"/instructor/announcements/{i}/withdraw",
        ids=("announcement",),
    ),
    Endpoint(
        "round-new",
        "instructor",
        lambda w, i: "/instructor/rounds/new",
        ("title", "brief", "templates", "quota", "circle_limit", "gallery_shared"),
        files=("images",),
    ),
    Endpoint(
        "round-edit",
        "instructor",
        lambda w, i: f"/instructor/rounds/{i}/edit",
        ("title", "brief", "templates", "quota", "circle_limit", "gallery_shared"),
        ids=("round",),
        files=("images",),
    ),
    Endpoint(
        "round-image-delete",
        "instructor",
        lambda w, i: f"/instructor/rounds/{w['round']}/images/{i}/delete",
        url_texts=("a.png", "..", "%2e%2e", "%00.png", "²", "x" * 300),
    ),
    Endpoint(
        "round-open", "instructor", lambda w, i: f"/instructor/rounds/{i}/open", ("next",), ids=("round",)
    ),
    Endpoint(
        "round-pause", "instructor", lambda w, i: f"/instructor/rounds/{i}/pause", ("next",), ids=("round",)
    ),
    Endpoint("round-close", "instructor", lambda w, i: f"/instructor/rounds/{i}/close", ids=("round",)),
    Endpoint("workshop", "instructor", lambda w, i: "/instructor/workshop", ("name", "date", "gpu_budget")),
    Endpoint("warm", "instructor", lambda w, i: "/instructor/warm", ("workers",)),
    Endpoint("burst-go", "instructor", lambda w, i: f"/instructor/rounds/{i}/go", ("next",), ids=("round",)),
    Endpoint(
        "burst-close",
        "instructor",
        lambda w, i: f"/instructor/rounds/{i}/burst-close",
        ("next",),
        ids=("round",),
    ),
    Endpoint(
        "top-up",
        "instructor",
        lambda w, i: f"/instructor/rounds/{w['round']}/top-up/{i}",
        ("amount",),
        ids=("filmmaker", "me"),
    ),
    Endpoint(
        "instructor-cancel",
        "instructor",
        lambda w, i: f"/instructor/generations/{i}/cancel",
        ids=("their_generation",),
    ),
    Endpoint(
        "spotlight",
        "instructor",
        lambda w, i: f"/instructor/takes/{i}/spotlight",
        ids=("their_take", "my_take"),
    ),
    Endpoint(
        "spotlight-next", "instructor", lambda w, i: f"/instructor/rounds/{i}/spotlight-next", ids=("round",)
    ),
    Endpoint("spotlight-clear", "instructor", lambda w, i: "/instructor/spotlight/clear"),
    Endpoint(
        "export-csv",
        "instructor",
        lambda w, i: "/instructor/exports/generations.csv",
        ("round",),
        method="get",
    ),
    Endpoint(
        "planner",
        "instructor",
        lambda w, i: "/instructor/planner",
        (
            "filmmakers",
            "rounds",
            "per_round",
            "minutes_per_job",
            "round_minutes",
            "price_per_hour",
            "billing_seconds",
            "cold_start_s",
        ),
        method="get",
    ),
    Endpoint("accounts-create", "instructor", lambda w, i: "/instructor/accounts/create", ("names", "batch")),
    Endpoint(
        "accounts-reset", "instructor", lambda w, i: f"/instructor/accounts/{i}/reset", ids=("filmmaker",)
    ),
    Endpoint(
        "accounts-deactivate",
        "instructor",
        lambda w, i: f"/instructor/accounts/{i}/deactivate",
        ids=("filmmaker",),
    ),
    Endpoint(
        "accounts-activate",
        "instructor",
        lambda w, i: f"/instructor/accounts/{i}/activate",
        ids=("filmmaker",),
    ),
    Endpoint("accounts-unlock", "instructor", lambda w, i: "/instructor/accounts/unlock", ("username",)),
]


def client_for(world: dict[str, Any], who: str) -> Client:
    """One logged-in client per role for the whole test (logging in for each example is slow)."""
    clients = world.setdefault("clients", {})
    if who not in clients:
        clients[who] = Client()
        if who != "anonymous":
            clients[who].force_login(world["users"][who])
    return clients[who]


def check(response: Any, before: list[Any]) -> None:
    """A 2xx, 3xx or 4xx with something to say; nothing changed when it was refused."""
    assert response.status_code < 500
    queued = getattr(getattr(response.wsgi_request, "_messages", None), "_queued_messages", [])
    refused = response.status_code >= 400 or any(m.level >= constants.WARNING for m in queued)
    if response.status_code >= 400:
        assert response.content.strip(), f"a bare {response.status_code}"
    if refused:
        assert state() == before


def url_ids(world: dict[str, Any], endpoint: Endpoint) -> st.SearchStrategy[Any]:
    if endpoint.url_texts:
        return st.sampled_from(endpoint.url_texts)
    if not endpoint.ids:
        return st.just(0)
    return st.sampled_from([world[k] for k in endpoint.ids]) | st.sampled_from(HUGE_IDS)


def request(  # type: ignore[no-untyped-def]
    client: Client, endpoint: Endpoint, path: str, fields: dict[str, str], files: dict[str, Any], htmx: bool
):
    headers = {"HX-Request": "true"} if htmx else {}
    if endpoint.method == "get":
        # A query string arrives percent-decoded as UTF-8 with errors replaced; send what can be sent.
        return client.get(path, {k: sendable(v) for k, v in fields.items()}, headers=headers)
    if files:  # multipart
        return client.post(path, {**{k: sendable(v) for k, v in fields.items()}, **files}, headers=headers)
    return post_form(client, path, fields, **headers)


def value_for(world: dict[str, Any], name: str) -> st.SearchStrategy[str]:
    own = {
        "template": [str(world["template"])],
        "templates": [str(world["template"])],
        "submit_token": [THEIR_TOKEN, "00000000-0000-0000-0000-000000000000"],
        "t": [str(world["my_take"]), str(world["their_take"])],
        "round": [str(world["round"])],
        "username": ["alice", "bob", "ines", "root"],
        "next": ["/gallery/", "https://evil.example/", "//evil.example", "javascript:alert(1)"],
    }.get(name, [])
    return st.one_of(st.sampled_from(own), text) if own else text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@FUZZ
@given(data=st.data())
def test_it_never_answers_500(world, endpoint: Endpoint, data: st.DataObject) -> None:
    url_id = data.draw(url_ids(world, endpoint), label="url id")
    fields = {name: data.draw(value_for(world, name), label=name) for name in dict.fromkeys(endpoint.fields)}
    htmx = data.draw(st.booleans(), label="htmx")
    client = client_for(world, endpoint.who)
    path = endpoint.path(world, url_id)
    files = {}
    for name in endpoint.files:
        content = data.draw(
            st.sampled_from([b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 32, b"GIF89a", HUGE.encode()])
        )
        filename = data.draw(st.sampled_from(["a.png", "..png", "x\x00.png", "²." + "p" * 300, "f"]))
        files[name] = SimpleUploadedFile(filename, content)
    before = state()
    check(request(client, endpoint, path, fields, files, htmx), before)


# Each of these in every field of every endpoint, at least once: Hypothesis' few examples may miss one.
BATTERY = ["a\x00b", "x\ud800y", "one\r\ntwo", HUGE, "9" * 4400, "²", "Infinity", "[" * 5000 + "]" * 5000]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_it_never_answers_500_to_the_usual_suspects(world, endpoint: Endpoint) -> None:
    path = endpoint.path(world, world[endpoint.ids[0]] if endpoint.ids else (endpoint.url_texts or [0])[0])
    for value in BATTERY:
        client = client_for(world, endpoint.who)
        before = state()
        check(request(client, endpoint, path, dict.fromkeys(endpoint.fields, value), {}, False), before)


# --- The admin's workflow import ----------------------------------------------------------------

SAVE = '{"1": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}, '
NUMBERS = ["9" * 4400, "Infinity", "-Infinity", "NaN", "1e999", "-0", "1e-999", str(2**64), "7"]
KEYS = ["²", "٣", "1:2", "9" * 30, "", "\\u0000", "\\ud800", "2"]
STRINGS = ['"\\u0000"', '"\\ud800"', '"a\\r\\nb"', json.dumps(HUGE), '"\\udfff\\ud800"']
workflow_text = st.one_of(
    st.sampled_from(
        ["[" * 200_000 + "]" * 200_000, "{" * 100, "", "null", "[]", "{}", '{"nodes": [], "links": []}']
    ),
    st.builds(
        lambda key, value: (
            SAVE + f'"{key}": {{"class_type": "KSampler", "inputs": {{"seed": {value}, "steps": 20}}}}}}'
        ),
        st.sampled_from(KEYS),
        st.sampled_from(NUMBERS + STRINGS + ["[" * 500 + "1" + "]" * 500]),
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    ).map(json.dumps),
)
IMPORT = "/admin/generations/workflowtemplate/import/"


@FUZZ
@given(raw=workflow_text, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_it_never_answers_500_on_a_workflow_upload(world, raw: str, encoding: str) -> None:
    client = client_for(world, "admin")
    before = state()
    content = (
        raw.encode(encoding, "surrogatepass") if encoding != "latin-1" else raw.encode("latin-1", "replace")
    )
    response = client.post(IMPORT, {"file": SimpleUploadedFile("wf.json", content)})
    check(response, before)


CONFIRM_FIELDS = [
    "use",
    "name",
    "label",
    "type",
    "default",
    "min",
    "max",
    "step",
    "offset",
    "required",
    "choices",
    "help",
    "targets",
]


@FUZZ
@given(
    raw=workflow_text | st.just(SAVE + '"2": {"class_type": "KSampler", "inputs": {"seed": 1}}}'),
    data=st.data(),
)
def test_it_never_answers_500_on_a_workflow_confirm(world, raw: str, data: st.DataObject) -> None:
    client = client_for(world, "admin")
    rows = data.draw(st.sampled_from(["1", "0", "2", "-1", "9" * 4400, "x", "1001"]), label="TOTAL_FORMS")
    body: dict[str, str] = {
        "workflow": raw,
        "fields-TOTAL_FORMS": rows,
        "fields-INITIAL_FORMS": data.draw(st.sampled_from(["0", "1", "²"]), label="INITIAL_FORMS"),
        "confirm": "Create the template",
    }
    for name in [
        "name",
        "slug",
        "kind",
        "description",
        "queue",
        "estimated_seconds",
        "timeout_seconds",
        "requirements",
    ]:
        body[name] = data.draw(st.sampled_from(["video", "x", "60"]) | text, label=name)
    for name in CONFIRM_FIELDS:
        choices = {
            "type": ["int", "seed", "text", "float", "choice"],
            "targets": ['["2", "seed"]', '["9", "x"]'],
        }
        value = data.draw(st.sampled_from(choices.get(name, ["on", "seed"])) | text, label=name)
        body[f"fields-0-{name}"] = value
    before = state()
    check(post_form(client, IMPORT, body), before)


# --- The 500s found before, each pinned -----------------------------------------------------------


def test_it_refuses_a_nul_in_a_note(owner_client, world) -> None:
    before = state()
    response = owner_client.post(f"/gallery/takes/{world['my_take']}/note", {"note": "a\x00b"})
    assert response.status_code == 422 and b"NUL" in response.content and state() == before


def test_it_refuses_another_filmmakers_submit_token(owner_client, world, valid_data) -> None:
    before = state()
    response = owner_client.post(
        f"/rounds/{world['round']}/generate", {**valid_data, "submit_token": THEIR_TOKEN}
    )
    assert response.status_code == 422 and "already used" in response.content.decode() and state() == before


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 200_000 + "]" * 200_000,
        SAVE + '"²": {"class_type": "KSampler", "inputs": {"seed": 1}}}',
        SAVE + '"2": {"class_type": "KSampler", "inputs": {"seed": ' + "9" * 4400 + "}}}",
        SAVE + '"2": {"class_type": "KSampler", "inputs": {"seed": Infinity}}}',
    ],
    ids=["deep", "superscript-id", "4400-digits", "infinity"],
)
def test_it_answers_the_admins_import_of_these_without_a_500(world, raw: str) -> None:
    client = client_for(world, "admin")
    before = state()
    response = client.post(IMPORT, {"file": SimpleUploadedFile("wf.json", raw.encode())})
    assert response.status_code == 200 and state() == before
