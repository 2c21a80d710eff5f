from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from generations.dispatch import attempts, uploads
from generations.models import Generation, Round, WorkflowTemplate
from tests.media import make_video


def submit(client: Client, rnd: Round, data: dict[str, str]):
    return client.post(reverse("generation-submit", args=[rnd.pk]), data, HTTP_HX_REQUEST="true")


def test_it_sends_anonymous_visitors_to_the_login_page(open_round) -> None:
    response = Client().get(reverse("round", args=[open_round.pk]))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_lands_a_filmmaker_on_the_open_round(owner_client, open_round) -> None:
    assert owner_client.get("/")["Location"] == reverse("round", args=[open_round.pk])


def test_it_shows_the_brief_and_the_form(owner_client, open_round) -> None:
    html = owner_client.get(reverse("round", args=[open_round.pk])).content.decode()
    assert "One shot." in html and 'name="prompt"' in html and 'id="my-queue"' in html


def test_it_answers_a_submission_with_the_job_card(owner_client, open_round, valid_data) -> None:
    response = submit(owner_client, open_round, valid_data)
    g = Generation.objects.get()
    assert response.status_code == 200
    assert f'id="gen-{g.pk}"' in response.content.decode() and g.params["frames"] == 9


def test_it_answers_a_valid_submission_with_what_changes_in_the_form(
    owner_client, open_round, valid_data
) -> None:
    sent = str(uuid.uuid4())
    response = submit(owner_client, open_round, {**valid_data, "submit_token": sent})
    html = response.content.decode()
    # The page keeps its form; a new token and the seed (blank again, unlocked) come out of band.
    assert response["HX-Reswap"] == "none" and 'name="prompt"' not in html
    token = re.search(r'id="submit-token" name="submit_token" value="([0-9a-f-]+)" hx-swap-oob="true"', html)
    assert token and token[1] != sent
    assert 'id="field-seed" hx-swap-oob="true"' in html and 'name="seed" value=' not in html
    blank = submit(owner_client, open_round, {**valid_data, "seed": "", "submit_token": str(uuid.uuid4())})
    assert 'id="submit-token"' in blank.content.decode()
    assert 'id="field-seed"' not in blank.content.decode()  # blank it was, blank it stays: not sent


def test_it_unticks_instructor_priority_after_each_take(instructor, open_round, valid_data) -> None:
    client = Client()
    client.force_login(instructor)
    # A blank seed: the answer renders no form at all, only the token and the tick.
    html = submit(client, open_round, {**valid_data, "seed": "", "priority": "on"}).content.decode()
    assert Generation.objects.get().priority and 'id="field-seed"' not in html
    unticked = '<input type="checkbox" name="priority">'
    assert f'<label class="check" id="priority-check" hx-swap-oob="true">{unticked}' in html


def test_it_renders_the_whole_form_again_after_a_refusal(owner_client, open_round, valid_data) -> None:
    refused = submit(owner_client, open_round, {**valid_data, "prompt": ""}).content.decode()
    assert 'name="shows_refusal"' in refused and "This field is required." in refused
    html = submit(owner_client, open_round, {**valid_data, "shows_refusal": "1"}).content.decode()
    assert 'name="prompt"' in html and "This field is required." not in html and "shows_refusal" not in html


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prompt": ""}, "This field is required."),
        ({"frames": "500"}, "less than or equal to 121"),
        ({"width": "wide"}, "Enter a whole number."),
        ({"template": "9999"}, "Unknown template"),
        ({"template": "abc"}, "Unknown template"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_message(
    owner_client, open_round, valid_data, change, message
) -> None:
    response = submit(owner_client, open_round, {**valid_data, **change})
    assert response.status_code == 422 and message in response.content.decode()
    assert not Generation.objects.exists()


def test_it_refuses_a_closed_round(owner_client, open_round, valid_data) -> None:
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.CLOSED)
    response = submit(owner_client, open_round, valid_data)
    assert response.status_code == 422 and "is closed" in response.content.decode()
    assert not Generation.objects.exists()


def test_it_hides_a_draft_round_from_filmmakers(owner_client, open_round) -> None:
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.DRAFT)
    assert owner_client.get(reverse("round", args=[open_round.pk])).status_code == 404


def test_it_refuses_a_submission_to_a_draft_round_as_if_it_did_not_exist(
    owner_client, open_round, valid_data
) -> None:
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.DRAFT, title="Secret plans")
    response = submit(owner_client, open_round, valid_data)
    assert response.status_code == 404 and "Secret plans" not in response.content.decode()
    assert not Generation.objects.exists()


def test_it_tells_an_instructor_why_a_draft_round_takes_no_submission(
    owner_client, instructor, open_round, valid_data, template
) -> None:
    assert submit(owner_client, open_round, valid_data).status_code == 200  # a filmmaker asked first
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.DRAFT)
    assert submit(owner_client, open_round, valid_data).status_code == 404
    client = Client()
    client.force_login(instructor)  # sees drafts: the round is there, and says why it refuses
    response = submit(client, open_round, valid_data)
    assert response.status_code == 422 and "is draft: no new generations" in response.content.decode()
    other = WorkflowTemplate.objects.create(name="Other", slug="other", workflow={}, param_spec=[])
    response = submit(client, open_round, {**valid_data, "template": str(other.pk)})  # not offered here
    assert response.status_code == 422 and "Unknown template" in response.content.decode()
    assert Generation.objects.count() == 1


def test_it_shows_the_owner_their_job_card(owner_client, generation) -> None:
    assert owner_client.get(reverse("generation-card", args=[generation.pk])).status_code == 200


def test_it_hides_a_job_card_from_another_filmmaker(other_client, generation) -> None:
    assert other_client.get(reverse("generation-card", args=[generation.pk])).status_code == 404


@pytest.fixture
def take(generation, tmp_path: Path):
    attempts.generation_dispatch(generation=generation)
    token = uploads.upload_url(generation=generation).rstrip("/").rsplit("/", 1)[1]
    data = make_video(tmp_path / "v.mp4").read_bytes()
    return uploads.take_store(token=token, filename="v.mp4", chunks=[data], content_type="video/mp4")


def test_it_serves_a_take_to_its_owner_with_ranges(owner_client, take) -> None:
    response = owner_client.get(reverse("take-file", args=[take.pk]), HTTP_RANGE="bytes=10-19")
    assert response.status_code == 206 and response["Content-Range"] == f"bytes 10-19/{take.size}"
    assert b"".join(response.streaming_content) == take.file.open("rb").read()[10:20]


def test_it_serves_the_whole_take_without_a_range(owner_client, take) -> None:
    response = owner_client.get(reverse("take-file", args=[take.pk]))
    assert response.status_code == 200 and response["Accept-Ranges"] == "bytes"
    assert len(b"".join(response.streaming_content)) == take.size


def test_it_refuses_a_range_outside_the_file(owner_client, take) -> None:
    response = owner_client.get(reverse("take-file", args=[take.pk]), HTTP_RANGE=f"bytes={take.size + 5}-")
    assert response.status_code == 416


def test_it_hides_a_take_from_another_filmmaker(other_client, take) -> None:
    assert other_client.get(reverse("take-file", args=[take.pk])).status_code == 404
    assert other_client.get(reverse("take-poster", args=[take.pk])).status_code == 404


def test_it_shows_any_take_to_an_instructor(instructor, take) -> None:
    client = Client()
    client.force_login(instructor)
    assert client.get(reverse("take-file", args=[take.pk])).status_code == 200


@pytest.fixture
def held(acl_redis, generation):  # type: ignore[no-untyped-def]
    """(the generation's upload path, the Authorization of the enrolled host that holds its attempt)."""
    import base64

    from generations.fleet.hosts import host_enrol

    enrolment = host_enrol(name="h1", kind="local")
    attempts.generation_dispatch(generation=generation)
    acl_redis.admin().delete("rq:queue:video")  # the host's worker took the job...
    started = {"type": "started", "generation_id": generation.pk, "attempt": 1, "worker": "gpu-h1"}
    attempts.event_apply(started, host=enrolment.host)  # ...and said it started
    credential = base64.b64encode(f"gpu-h1:{enrolment.secret}".encode()).decode()
    return uploads.upload_url(generation=generation).removeprefix(
        "http://127.0.0.1:8000"
    ), f"Basic {credential}"


def test_it_accepts_an_upload_on_the_signed_url_from_the_holder(held, generation, tmp_path) -> None:
    url, auth = held
    video = make_video(tmp_path / "v.mp4").read_bytes()
    response = Client().put(url + "out.mp4", video, content_type="video/mp4", headers={"Authorization": auth})
    assert response.status_code == 201 and generation.takes.get().file.read() == video


def test_it_refuses_an_upload_without_the_hosts_credential(held, generation) -> None:
    url, _auth = held
    response = Client().put(url + "out.mp4", b"x", content_type="video/mp4")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    wrong = Client().put(url + "out.mp4", b"x", headers={"Authorization": "Basic Z3B1LWgxOm5vcGU="})
    assert wrong.status_code == 401 and not generation.takes.exists()


def test_it_refuses_an_upload_with_a_bad_token(held, generation) -> None:
    _url, auth = held
    response = Client().put("/api/uploads/forged/notes.txt", b"hello", headers={"Authorization": auth})
    assert response.status_code == 403 and not generation.takes.exists()


def test_it_refuses_a_page_with_415(held, generation) -> None:
    url, auth = held
    response = Client().put(url + "x.html", b"<script>alert(1)</script>", headers={"Authorization": auth})
    assert response.status_code == 415 and not generation.takes.exists()


def test_it_tells_the_proxy_whether_an_upload_may_send_its_body(held) -> None:
    url, auth = held
    check = {"X-Forwarded-Method": "PUT", "X-Forwarded-Uri": url + "out.mp4"}
    assert Client().get("/api/upload-check", headers={**check, "Authorization": auth}).status_code == 204
    assert Client().get("/api/upload-check", headers=check).status_code == 401


def test_it_hands_the_download_to_the_proxy_when_configured(owner_client, take, settings) -> None:
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    response = owner_client.get(reverse("take-file", args=[take.pk]))
    assert response["X-Accel-Redirect"] == "/protected-media/" + take.file.name and not response.content


def test_it_checks_permission_before_handing_to_the_proxy(other_client, take, settings) -> None:
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    assert other_client.get(reverse("take-file", args=[take.pk])).status_code == 404


def test_it_tells_a_filmmaker_when_no_round_is_open_and_keeps_checking(owner_client, open_round) -> None:
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.DRAFT)
    html = owner_client.get("/").content.decode()
    assert "No round is open yet" in html and 'hx-trigger="every 10s"' in html


def test_it_sends_the_waiting_page_to_the_round_once_it_opens(owner_client, open_round) -> None:
    response = owner_client.get("/", HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == reverse("round", args=[open_round.pk])


def test_it_lands_an_instructor_on_the_panel(instructor, open_round) -> None:
    client = Client()
    client.force_login(instructor)
    assert client.get("/")["Location"] == reverse("instructor-panel")


def test_it_keeps_a_locked_seed_for_the_next_take(owner_client, open_round, valid_data) -> None:
    url = reverse("generation-submit", args=[open_round.pk])
    locked = owner_client.post(url, {**valid_data, "seed_lock": "on"}).content.decode()
    unlocked = owner_client.post(url, {**valid_data, "submit_token": str(uuid.uuid4())}).content.decode()
    # Locked, the field stays as it is on the page (not sent); unlocked, the typed seed goes blank.
    assert 'id="field-seed"' not in locked and 'id="submit-token"' in locked
    assert 'id="field-seed"' in unlocked and 'name="seed" value=' not in unlocked
    assert [g.params["seed"] for g in Generation.objects.order_by("pk")] == [7, 7]


def test_it_confirms_a_cancel_with_a_toast(owner_client, generation) -> None:
    response = owner_client.post(reverse("generation-cancel", args=[generation.pk]), HTTP_HX_REQUEST="true")
    assert json.loads(response["HX-Trigger"])["toast"]["text"] == f"#{generation.pk} cancelled."
    assert f'id="gen-{generation.pk}"' in response.content.decode().split('id="my-takes"')[1]
