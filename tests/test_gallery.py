"""The gallery's services and reads: circling, notes, the shared-gallery rule, compare, remix,
the ZIP, the CSV. Takes are made through the real upload path (`make_take`)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
import tracemalloc
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db import connection

from accounts.models import User
from generations.dispatch import attempts, probe, uploads
from generations.gallery import compare, downloads, remix
from generations.gallery import selectors as gallery
from generations.gallery import services as gallery_services
from generations.models import Generation, Round, Take
from generations.queue import access, selectors, services
from tests.conftest import make_user
from tests.media import make_video

_video: dict[int, bytes] = {}


def video_bytes(frames: int = 9) -> bytes:
    if frames not in _video:
        path = make_video(Path(tempfile.mkdtemp()) / "v.mp4", frames=frames, width=64, height=48)
        _video[frames] = path.read_bytes()
    return _video[frames]


def png_bytes(width: int = 96, height: int = 64) -> bytes:
    rgb = np.full((height, width, 3), 200, dtype=np.uint8)
    return probe._encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"), "png", "rgb24", width)


def make_take(
    owner: User, rnd: Round, *, prompt: str = "a lighthouse", seed: int = 7, circled: bool = False, **extra
) -> Take:
    """A take delivered the way a worker delivers it: dispatch, upload, succeeded. A video unless
    `image=True` (a PNG); `video_frames` makes a longer one."""
    frames, image = extra.pop("video_frames", 9), extra.pop("image", False)
    params = {"prompt": prompt, "seed": seed, "frames": 9, "width": 64, "height": 64, "fps": 12, **extra}
    g = services.generation_create(owner=owner, round_id=rnd.pk, template=rnd.templates.get(), params=params)
    attempts.generation_dispatch(generation=g)
    token = uploads.upload_url(generation=g).rstrip("/").rsplit("/", 1)[1]
    name, data, content_type = (
        ("still.png", png_bytes(), "image/png") if image else ("take.mp4", video_bytes(frames), "video/mp4")
    )
    take = uploads.take_store(token=token, filename=name, chunks=[data], content_type=content_type)
    attempts.event_apply({"type": "succeeded", "generation_id": g.pk, "attempt": g.attempt})
    Take.objects.filter(pk=take.pk).update(circled=circled)
    return access.current_takes().get(pk=take.pk)


def new_round(template, title: str = "Round 2", **fields) -> Round:
    rnd = Round.objects.create(title=title, status=Round.Status.OPEN, **fields)
    rnd.templates.add(template)
    return rnd


def test_it_makes_a_thumbnail_once_when_a_take_arrives(owner, open_round) -> None:
    take = make_take(owner, open_round)
    assert take.thumbnail.name.endswith("-thumb.jpg") and take.poster
    assert take.thumbnail.read()[:2] == b"\xff\xd8"


def test_it_makes_a_thumbnail_of_an_image_take(owner, open_round) -> None:
    take = make_take(owner, open_round, image=True)
    assert take.kind == Take.Kind.IMAGE and not take.poster
    assert take.thumbnail.read()[:2] == b"\xff\xd8"


def test_it_circles_up_to_the_rounds_limit(owner, open_round) -> None:
    Round.objects.filter(pk=open_round.pk).update(circle_limit=2)
    a, b, c = (make_take(owner, open_round, seed=i) for i in range(3))
    assert gallery_services.take_circle(take=a, circled=True) and gallery_services.take_circle(
        take=b, circled=True
    )
    with pytest.raises(gallery_services.CircleRefused, match="at most 2 takes in “Round 1”"):
        gallery_services.take_circle(take=c, circled=True)
    assert Take.objects.filter(circled=True).count() == 2


def test_it_frees_a_place_when_a_take_is_uncircled(owner, open_round) -> None:
    Round.objects.filter(pk=open_round.pk).update(circle_limit=1)
    a, b = make_take(owner, open_round, circled=True), make_take(owner, open_round)
    gallery_services.take_circle(take=a, circled=False)
    assert gallery_services.take_circle(take=b, circled=True)
    assert list(Take.objects.filter(circled=True)) == [b]


def test_it_counts_the_limit_per_filmmaker_and_round(owner, other, open_round, template) -> None:
    Round.objects.filter(pk=open_round.pk).update(circle_limit=1)
    make_take(owner, open_round, circled=True)
    assert gallery_services.take_circle(take=make_take(other, open_round), circled=True)
    assert gallery_services.take_circle(take=make_take(owner, new_round(template)), circled=True)


@pytest.mark.django_db(transaction=True)
def test_it_holds_the_limit_when_two_tabs_circle_at_once(owner, open_round) -> None:
    Round.objects.filter(pk=open_round.pk).update(circle_limit=1)
    takes = [make_take(owner, open_round, seed=i) for i in range(6)]
    barrier, outcomes = threading.Barrier(len(takes)), []

    def circle(take: Take) -> None:
        barrier.wait()
        try:
            outcomes.append(gallery_services.take_circle(take=take, circled=True))
        except gallery_services.CircleRefused:
            outcomes.append(False)
        finally:
            connection.close()

    threads = [threading.Thread(target=circle, args=(t,)) for t in takes]
    [t.start() for t in threads], [t.join() for t in threads]
    assert outcomes.count(True) == 1 and Take.objects.filter(circled=True).count() == 1


def test_it_saves_a_note_and_refuses_a_long_one(owner, open_round) -> None:
    take = make_take(owner, open_round)
    gallery_services.take_note_set(take=take, note="  the keeper  ")
    with pytest.raises(gallery_services.NoteRefused, match="at most 500"):
        gallery_services.take_note_set(take=take, note="x" * 501)
    assert Take.objects.get(pk=take.pk).note == "the keeper"


def test_it_shows_another_filmmaker_only_circled_takes_of_a_shared_round(owner, other, open_round) -> None:
    circled, plain = make_take(owner, open_round, circled=True), make_take(owner, open_round)
    assert not access.takes_visible_to(other).exists()
    Round.objects.filter(pk=open_round.pk).update(gallery_shared=True)
    assert list(access.takes_visible_to(other)) == [circled]
    assert plain in access.takes_visible_to(owner)


def test_it_shares_a_closed_rounds_circled_takes(owner, other, open_round) -> None:
    take = make_take(owner, open_round, circled=True)
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.CLOSED)
    assert access.take_visible_to(other, take.pk) == take


def test_it_shows_an_instructor_every_take(owner, instructor, open_round) -> None:
    take = make_take(owner, open_round)
    assert access.take_visible_to(instructor, take.pk) == take


def test_it_never_counts_the_takes_of_a_lost_attempt(owner, open_round) -> None:
    take = make_take(owner, open_round)
    Generation.objects.filter(pk=take.generation_id).update(attempt=2)
    assert not access.current_takes().filter(pk=take.pk).exists()


def test_it_lists_only_my_section_of_an_unshared_round(owner, other, open_round) -> None:
    make_take(owner, open_round, circled=True)
    mine = make_take(other, open_round, circled=True)
    page = gallery.shared_gallery(other, open_round)
    assert [s.owner for s in page.sections] == [other] and page.sections[0].takes == [mine]


def test_it_lists_everyones_circled_takes_once_shared(owner, other, open_round) -> None:
    a, _ = make_take(owner, open_round, circled=True), make_take(owner, open_round)
    b = make_take(other, open_round, circled=True)
    Round.objects.filter(pk=open_round.pk).update(gallery_shared=True)
    page = gallery.shared_gallery(other, Round.objects.get(pk=open_round.pk))
    assert {s.owner.username: s.takes for s in page.sections} == {"alice": [a], "bob": [b]}


def test_it_pages_my_takes_a_round_at_a_time(owner, template, open_round, monkeypatch) -> None:
    monkeypatch.setattr(gallery, "PAGE_TAKES", 2)
    later = new_round(template)
    make_take(owner, open_round), make_take(owner, open_round), make_take(owner, later)
    first = gallery.my_gallery(owner, gallery.Filters())
    assert [s.round for s in first.sections] == [later, open_round] and first.next_after is None
    monkeypatch.setattr(gallery, "PAGE_TAKES", 1)
    page = gallery.my_gallery(owner, gallery.Filters())
    assert [s.round for s in page.sections] == [later] and page.next_after == later.pk
    assert [s.round for s in gallery.my_gallery(owner, gallery.Filters(), after=later.pk).sections] == [
        open_round
    ]


def test_it_filters_circled_and_sorts_oldest_first(owner, open_round) -> None:
    a, b, c = (
        make_take(owner, open_round, circled=True),
        make_take(owner, open_round),
        make_take(owner, open_round),
    )
    Take.objects.filter(pk=c.pk).update(circled=True)
    section = gallery.my_gallery(owner, gallery.Filters(circled=True, newest=False)).sections[0]
    assert section.takes == [a, c] and (section.total, section.circled) == (3, 2)
    assert gallery.my_gallery(owner, gallery.Filters()).sections[0].takes == [c, b, a]


def test_it_compares_takes_and_tells_what_differs(owner, open_round) -> None:
    a = make_take(owner, open_round, prompt="a fox", seed=1)
    b = make_take(owner, open_round, prompt="a fox at dusk", seed=2)
    comparison = compare.compare(owner, [str(b.pk), str(a.pk)])
    assert comparison.takes == [b, a]
    assert [r.label for r in comparison.differing] == ["Prompt", "Seed"]
    assert "Frames" in [r.label for r in comparison.same]


@pytest.mark.parametrize("count", [1, 5])
def test_it_compares_two_to_four_takes(owner, open_round, count) -> None:
    ids = [str(make_take(owner, open_round, seed=i).pk) for i in range(count)]
    with pytest.raises(compare.CompareRefused, match="Pick 2 to 4"):
        compare.compare(owner, ids)


def test_it_builds_a_remix_link_with_a_new_or_the_same_seed(owner, open_round) -> None:
    take = make_take(owner, open_round, prompt="a fox", seed=42)
    new = urlsplit(remix.remix_url(user=owner, take=take, same_seed=False))
    assert new.path == f"/rounds/{open_round.pk}/" and new.fragment == "submit-form"
    assert parse_qs(new.query)["prompt"] == ["a fox"] and "seed" not in parse_qs(new.query)
    same = parse_qs(urlsplit(remix.remix_url(user=owner, take=take, same_seed=True)).query)
    assert same["seed"] == ["42"] and same["template"] == [open_round.templates.get().slug]


def test_it_remixes_into_the_open_round_when_the_takes_round_is_closed(owner, open_round, template) -> None:
    take = make_take(owner, open_round)
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.CLOSED)
    now = new_round(template, title="Round 2")
    assert remix.remix_url(user=owner, take=take, same_seed=False).startswith(f"/rounds/{now.pk}/?")


def test_it_reads_initial_values_only_from_a_remix_link(template) -> None:
    assert remix.remix_initial({"prompt": "a fox"}, template) == {}
    initial = remix.remix_initial({"remix": "3", "prompt": "a fox", "frames": "17", "evil": "1"}, template)
    assert initial == {"prompt": "a fox", "frames": "17"}


def test_it_zips_my_circled_takes_with_a_manifest(owner, open_round) -> None:
    circled, _ = make_take(owner, open_round, circled=True, prompt="=cmd"), make_take(owner, open_round)
    data = b"".join(downloads.circled_zip(selectors.circled_takes_of(owner)))
    archive = zipfile.ZipFile(io.BytesIO(data))
    name = f"round-1-r{open_round.pk}/g{circled.generation_id}-seed7-take.mp4"
    assert archive.namelist() == [name, "takes.csv"] and archive.testzip() is None
    assert archive.read(name) == circled.file.open("rb").read()
    rows = list(csv.DictReader(io.StringIO(archive.read("takes.csv").decode())))
    assert rows[0]["file"] == name and rows[0]["prompt"] == "'=cmd"


def test_it_streams_a_large_zip_in_flat_memory(owner, open_round) -> None:
    takes = [make_take(owner, open_round, circled=i < 3, seed=i) for i in range(3)]
    for take in takes:  # 3 × 8 MB of incompressible bytes
        take.file.save("big.mp4", ContentFile(os.urandom(8 * 1024 * 1024)), save=True)
    tracemalloc.start()
    size = sum(len(chunk) for chunk in downloads.circled_zip(selectors.circled_takes_of(owner)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size > 24 * 1024 * 1024 and peak < 2 * 1024 * 1024, peak


def test_it_writes_a_csv_of_every_generation_of_mine(owner, other, open_round, generation) -> None:
    take = make_take(owner, open_round, circled=True, prompt="@sum")
    gallery_services.take_note_set(take=take, note="keeper")
    make_take(other, open_round)
    rows = list(csv.DictReader(io.StringIO(downloads.generations_csv(owner))))
    assert [(r["generation"], r["status"]) for r in rows] == [
        (str(generation.pk), "queued"),
        (str(take.generation_id), "succeeded"),
    ]
    assert rows[1]["prompt"] == "'@sum" and rows[1]["circled"] == "take.mp4" and rows[1]["notes"] == "keeper"


def test_it_lists_a_contact_sheet_of_my_takes_by_round(owner, other, open_round, template) -> None:
    mine = make_take(owner, open_round, circled=True)
    make_take(owner, open_round), make_take(other, open_round, circled=True)
    sections = downloads.contact_sheet(owner, gallery.Filters(circled=True))
    assert [(s.round, s.takes) for s in sections] == [(open_round, [mine])]


def test_it_makes_new_users_see_nothing(open_round) -> None:
    stranger = make_user("carol")
    assert gallery.my_gallery(stranger, gallery.Filters()).sections[0].takes == []
