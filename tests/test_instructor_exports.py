"""End-of-day exports: a ZIP of each filmmaker's circled takes, a CSV of every generation."""

from __future__ import annotations

import csv
import io
import os
import tracemalloc
import zipfile
import zlib
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncRequestFactory, Client
from django.urls import reverse

from accounts.models import User
from generations.instructor import exports
from generations.instructor import views as instructor_views
from generations.models import Generation
from generations.queue import selectors
from tests.test_instructor import finish, submit


@pytest.fixture
def instructor_client(instructor: User) -> Client:
    client = Client()
    client.force_login(instructor)
    return client


def test_it_zips_a_filmmakers_circled_takes_only(
    instructor_client, owner, other, open_round, template
) -> None:
    mine = finish(submit(owner, open_round, template, "=cmd|calc"), circled=True, content=b"circled")
    finish(submit(owner, open_round, template), content=b"not circled")
    finish(submit(other, open_round, template), circled=True, content=b"someone else's")
    response = instructor_client.get(reverse("instructor-export-zip", args=[owner.pk]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    name = f"round-1-{open_round.pk}/g{mine.generation_id}-take.mp4"
    assert response["Content-Disposition"] == 'attachment; filename="circled-alice.zip"'
    assert archive.namelist() == [name, "takes.csv"] and archive.read(name) == b"circled"
    assert "'=cmd|calc" in archive.read("takes.csv").decode()  # never a formula in a spreadsheet


def test_it_streams_the_zip_in_flat_memory(owner, open_round, template) -> None:
    blobs = [os.urandom(4 * 1024 * 1024) for _ in range(3)]
    takes = [finish(submit(owner, open_round, template), circled=True, content=b) for b in blobs]
    del blobs
    tracemalloc.start()
    size, crc = 0, 0
    for chunk in exports.circled_zip(selectors.circled_takes_of(owner)):
        size, crc = size + len(chunk), zlib.crc32(chunk, crc)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size > 12 * 1024 * 1024 and peak < 2 * 1024 * 1024, (size, peak)
    assert len(takes) == 3 and crc == zlib.crc32(
        b"".join(exports.circled_zip(selectors.circled_takes_of(owner)))
    )


def test_it_notes_a_missing_file_instead_of_breaking_the_zip(owner, open_round, template) -> None:
    take = finish(submit(owner, open_round, template), circled=True)
    take.file.storage.delete(take.file.name)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(exports.circled_zip([take]))))
    assert archive.namelist() == ["takes.csv"] and "(missing)" in archive.read("takes.csv").decode()


def test_it_exports_every_generation_with_its_parameters_durations_worker_and_cost(
    settings, instructor_client, owner, open_round, template
) -> None:
    settings.GPU_PRICE_PER_HOUR = "3.6"
    finish(submit(owner, open_round, template, "a heron"), seconds=100, circled=True)
    submit(owner, open_round, template, "still waiting")
    response = instructor_client.get(reverse("instructor-export-csv"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    done, waiting = rows
    assert (done["prompt"], done["status"], done["worker"], done["gpu_seconds"]) == (
        "a heron",
        "succeeded",
        "gpu-1",
        "100.0",
    )
    assert Decimal(done["cost"]) == Decimal("0.1") and done["takes"] == "1" and done["circled"] == "1"
    assert '"frames": 9' in done["params"] and done["filmmaker"] == "alice" and done["seed"] == "3"
    assert (waiting["status"], waiting["gpu_seconds"], waiting["started_at"]) == ("queued", "0.0", "")


def test_it_exports_one_rounds_generations(instructor_client, owner, open_round, template) -> None:
    submit(owner, open_round, template)
    other_round = type(open_round).objects.create(title="Other")
    response = instructor_client.get(reverse("instructor-export-csv") + f"?round={other_round.pk}")
    assert len(b"".join(response.streaming_content).decode("utf-8-sig").splitlines()) == 1  # the header
    assert Generation.objects.count() == 1


def test_it_lists_whom_to_export(instructor_client, owner, other, open_round, template) -> None:
    finish(submit(owner, open_round, template), circled=True)
    html = instructor_client.get(reverse("instructor-exports")).content.decode()
    assert reverse("instructor-export-zip", args=[owner.pk]) in html
    assert reverse("instructor-export-zip", args=[other.pk]) not in html


def test_it_hands_daphne_an_iterator_it_need_not_read_whole(instructor, owner, open_round, template) -> None:
    finish(submit(owner, open_round, template), circled=True, content=b"circled")
    request = AsyncRequestFactory().get("/")
    request.user = instructor
    response = instructor_views.export_zip(request, owner.pk)

    async def body() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    assert (
        response.is_async and zipfile.ZipFile(io.BytesIO(async_to_sync(body)())).namelist()[1] == "takes.csv"
    )
