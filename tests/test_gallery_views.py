"""The gallery's pages, actions and downloads over HTTP, and who may reach them."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generations.gallery import selectors as gallery
from generations.gallery import services as gallery_services
from generations.models import Generation, Round, Take
from tests.test_gallery import make_take, new_round


@pytest.fixture
def take(owner, open_round) -> Take:
    return make_take(owner, open_round, prompt="a red kite over the cliffs", seed=31)


def test_it_shows_my_takes_with_prompt_seed_and_status(owner_client, take) -> None:
    html = owner_client.get(reverse("gallery")).content.decode()
    assert f'id="tile-{take.pk}"' in html and "a red kite over the cliffs" in html
    assert "seed 31" in html and "Succeeded" in html and 'loading="lazy"' in html
    assert f'ws-connect="/ws/gallery/?rounds={take.generation.round_id}"' in html


def test_it_opens_an_image_take_in_the_lightbox(owner_client, owner, open_round) -> None:
    still = make_take(owner, open_round, image=True)
    html = owner_client.get(reverse("gallery")).content.decode()
    assert f'class="g-zoom" data-full="/gallery/takes/{still.pk}/file"' in html and 'id="lightbox"' in html


def test_it_filters_my_takes_by_circled(owner_client, owner, open_round, take) -> None:
    circled = make_take(owner, open_round, circled=True)
    html = owner_client.get(reverse("gallery"), {"circled": "1"}).content.decode()
    assert f'id="tile-{circled.pk}"' in html and f'id="tile-{take.pk}"' not in html


def test_it_filters_my_takes_by_round(owner_client, owner, template, take) -> None:
    later = make_take(owner, new_round(template))
    html = owner_client.get(reverse("gallery"), {"round": take.generation.round_id}).content.decode()
    assert f'id="tile-{take.pk}"' in html and f'id="tile-{later.pk}"' not in html


def test_it_loads_more_rounds_through_htmx(owner_client, owner, template, take, monkeypatch) -> None:
    monkeypatch.setattr(gallery, "PAGE_TAKES", 1)
    later = make_take(owner, new_round(template))
    html = owner_client.get(reverse("gallery")).content.decode()
    assert f'id="tile-{later.pk}"' in html and 'id="gallery-more"' in html and f"tile-{take.pk}" not in html
    more = f"{reverse('gallery')}?after={later.generation.round_id}"
    page = owner_client.get(more, headers={"HX-Request": "true"}).content.decode()
    assert page.lstrip().startswith('<section class="g-section"') and f'id="tile-{take.pk}"' in page


def test_it_keeps_the_query_count_flat_as_takes_grow(owner_client, owner, open_round, take) -> None:
    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner_client.get(url).status_code == 200
        return len(ctx)

    urls = [
        reverse("gallery"),
        reverse("round-gallery", args=[open_round.pk]),
        reverse("gallery-contact-sheet"),
    ]
    before = [queries(u) for u in urls]
    for i in range(6):
        make_take(owner, open_round, circled=i < 3, seed=i)
    assert [queries(u) for u in urls] == before


def test_it_circles_and_answers_with_the_controls(owner_client, take) -> None:
    response = owner_client.post(reverse("gallery-circle", args=[take.pk]), {"circled": "1"})
    assert response.status_code == 200 and 'aria-pressed="true"' in response.content.decode()
    assert Take.objects.get(pk=take.pk).circled


def test_it_names_the_limit_when_refusing_a_circle(owner_client, owner, open_round, take) -> None:
    Round.objects.filter(pk=open_round.pk).update(circle_limit=1)
    make_take(owner, open_round, circled=True)
    response = owner_client.post(reverse("gallery-circle", args=[take.pk]), {"circled": "1"})
    assert response.status_code == 422 and "at most 1 take in “Round 1”" in response.content.decode()
    assert not Take.objects.get(pk=take.pk).circled


def test_it_saves_a_note(owner_client, take) -> None:
    response = owner_client.post(reverse("gallery-note", args=[take.pk]), {"note": "use for the ending"})
    assert response.status_code == 200 and 'value="use for the ending"' in response.content.decode()
    assert Take.objects.get(pk=take.pk).note == "use for the ending"


def test_it_confirms_a_saved_note_with_a_toast(owner_client, take) -> None:
    response = owner_client.post(
        reverse("gallery-note", args=[take.pk]), {"note": "ending"}, HTTP_HX_REQUEST="true"
    )
    assert json.loads(response["HX-Trigger"]) == {"toast": {"text": "Note saved.", "kind": "ok"}}


def test_it_refuses_another_filmmakers_circle_and_note(other_client, take) -> None:
    assert other_client.post(reverse("gallery-circle", args=[take.pk]), {"circled": "1"}).status_code == 404
    assert other_client.post(reverse("gallery-note", args=[take.pk]), {"note": "mine now"}).status_code == 404
    take.refresh_from_db()
    assert not take.circled and take.note == ""


def test_it_refuses_an_instructor_circling_a_filmmakers_take(instructor, take) -> None:
    client = Client()
    client.force_login(instructor)
    assert client.post(reverse("gallery-circle", args=[take.pk]), {"circled": "1"}).status_code == 404


@pytest.mark.parametrize("name", ["gallery-download", "gallery-remix"])
def test_it_hides_another_filmmakers_take(other_client, take, name) -> None:
    assert other_client.get(reverse(name, args=[take.pk])).status_code == 404


@pytest.mark.parametrize("what", ["file", "poster", "thumb"])
def test_it_hides_another_filmmakers_media(other_client, take, what) -> None:
    Take.objects.filter(pk=take.pk).update(circled=True)  # circled, but the round is not shared
    assert other_client.get(reverse("gallery-media", args=[take.pk, what])).status_code == 404


def test_it_hides_another_filmmakers_take_from_compare(other_client, other, open_round, take) -> None:
    mine = make_take(other, open_round)
    response = other_client.get(reverse("gallery-compare"), {"t": [mine.pk, take.pk]})
    assert response.status_code == 404


def test_it_serves_a_shared_rounds_circled_take_to_everyone(other_client, open_round, take) -> None:
    Take.objects.filter(pk=take.pk).update(circled=True)
    Round.objects.filter(pk=open_round.pk).update(gallery_shared=True)
    response = other_client.get(reverse("gallery-media", args=[take.pk, "thumb"]))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"


def test_it_hands_a_visible_take_to_the_proxy(settings, other_client, open_round, take) -> None:
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    url = reverse("gallery-media", args=[take.pk, "thumb"])
    assert other_client.get(url).status_code == 404
    Take.objects.filter(pk=take.pk).update(circled=True)
    Round.objects.filter(pk=open_round.pk).update(gallery_shared=True)
    assert other_client.get(url)["X-Accel-Redirect"] == f"/protected-media/{take.thumbnail.name}"


def test_it_shows_the_round_gallery_to_others_only_once_shared(other_client, open_round, take) -> None:
    Take.objects.filter(pk=take.pk).update(circled=True)
    url = reverse("round-gallery", args=[open_round.pk])
    assert f"tile-{take.pk}" not in other_client.get(url).content.decode()
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.CLOSED)
    html = other_client.get(url).content.decode()
    assert f'id="tile-{take.pk}"' in html and "by <strong" in html and "alice" in html
    assert "<dt>Frames per second</dt>" in html
    assert f'id="actions-{take.pk}"' not in html and "Add a note" not in html


def test_it_shows_my_own_circled_takes_in_an_unshared_round_gallery(owner_client, open_round, take) -> None:
    Take.objects.filter(pk=take.pk).update(circled=True)
    html = owner_client.get(reverse("round-gallery", args=[open_round.pk])).content.decode()
    assert f'id="actions-{take.pk}"' in html and "Not shared yet" in html


def test_it_compares_takes_with_one_control(owner_client, owner, open_round, take) -> None:
    second = make_take(owner, open_round, prompt="a red kite at dawn", seed=32, video_frames=17)
    html = owner_client.get(reverse("gallery-compare"), {"t": [take.pk, second.pk]}).content.decode()
    assert html.count("<video data-sync") == 2 and html.count("data-sync-play>") == 1
    assert '<tr class="differs"><th>Prompt</th>' in html and '<tr class="differs"><th>Seed</th>' in html


def test_it_asks_for_two_to_four_takes_to_compare(owner_client, take) -> None:
    response = owner_client.get(reverse("gallery-compare"), {"t": [take.pk]})
    assert response.status_code == 400 and "Pick 2 to 4 takes" in response.content.decode()


def test_it_fills_the_round_form_from_a_remix_link(owner_client, open_round, take) -> None:
    response = owner_client.get(reverse("gallery-remix", args=[take.pk]), {"seed": "same"})
    assert response.status_code == 302
    html = owner_client.get(response["Location"]).content.decode()
    assert "a red kite over the cliffs</textarea>" in html and 'name="seed" value="31"' in html


def test_it_leaves_the_seed_blank_for_a_new_one(owner_client, take) -> None:
    html = owner_client.get(
        owner_client.get(reverse("gallery-remix", args=[take.pk]))["Location"]
    ).content.decode()
    assert "a red kite over the cliffs</textarea>" in html and 'name="seed" value=' not in html


def test_it_downloads_one_take(owner_client, take) -> None:
    response = owner_client.get(reverse("gallery-download", args=[take.pk]))
    name = f"g{take.generation_id}-seed31-take.mp4"
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert b"".join(response.streaming_content) == take.file.open("rb").read()


def test_it_zips_only_my_circled_takes(owner_client, other_client, owner, open_round, take) -> None:
    circled = make_take(owner, open_round, circled=True)
    names = zipfile.ZipFile(io.BytesIO(b"".join(owner_client.get(reverse("gallery-zip"))))).namelist()
    assert names == [f"round-1-r{open_round.pk}/g{circled.generation_id}-seed7-take.mp4", "takes.csv"]
    Round.objects.filter(pk=open_round.pk).update(gallery_shared=True)
    others = zipfile.ZipFile(io.BytesIO(b"".join(other_client.get(reverse("gallery-zip")))))
    assert others.namelist() == ["takes.csv"]


def test_it_requires_a_login_for_every_download(take) -> None:
    for url in (reverse("gallery-zip"), reverse("gallery-csv"), reverse("gallery-contact-sheet")):
        assert Client().get(url).status_code == 302


def test_it_streams_the_zip_chunk_by_chunk_under_asgi(owner, open_round) -> None:
    circled = make_take(owner, open_round, circled=True)

    async def fetch() -> tuple[bool, bytes]:
        client = AsyncClient()
        await client.aforce_login(owner)
        response = await client.get(reverse("gallery-zip"))
        return response.is_async, b"".join([chunk async for chunk in response.streaming_content])

    is_async, data = async_to_sync(fetch)()
    assert (
        is_async
        and zipfile.ZipFile(io.BytesIO(data)).read(
            f"round-1-r{open_round.pk}/g{circled.generation_id}-seed7-take.mp4"
        )
        == circled.file.open("rb").read()
    )


def test_it_prints_a_contact_sheet(owner_client, owner, open_round, take) -> None:
    gallery_services.take_note_set(take=take, note="opening shot")
    html = owner_client.get(reverse("gallery-contact-sheet"), {"round": open_round.pk}).content.decode()
    assert "a red kite over the cliffs" in html and "seed 31" in html and "opening shot" in html
    assert f"/gallery/takes/{take.pk}/thumb" in html and "frames 9" in html and "data-print" in html


def test_it_downloads_a_csv_of_my_generations(owner_client, take, generation) -> None:
    response = owner_client.get(reverse("gallery-csv"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert {r["generation"] for r in rows} == {str(take.generation_id), str(generation.pk)}
    assert Generation.objects.filter(owner=take.generation.owner).count() == 2
