#!/usr/bin/env python
"""Server time and query count of the gallery's pages at the size of a workshop day.

Seeds 1,500 takes (20 filmmakers × 5 rounds × 15 generations; rows pointing at one small real
video, its poster and thumbnail; 3 circled per filmmaker and round) in PostgreSQL, then asks
for each page through django.test.Client (the whole middleware stack, sessions and auth
included, no network) and reports the median and p90 over many requests:

  my gallery       /gallery/                    one filmmaker's first page (whole rounds, >= 24 tiles)
  load more        /gallery/?after=<round>      the next page, as htmx asks for it on scroll
  shared gallery   /rounds/<closed>/gallery/    20 filmmakers' circled takes, 10 filmmakers a page
  contact sheet    /gallery/contact-sheet       all 75 takes of one filmmaker, for printing

The query counts are taken once at 300 takes and again at 1,500: they must not grow.

Usage: .venv/bin/python bench/gallery.py   (env: BENCH_REPEAT; DATABASE_URL and REDIS_URL override its own)
Prints a table, then one JSON line with the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
    os.environ.setdefault(name, "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="bench-gallery-")
os.environ["DJANGO_SETTINGS_MODULE"] = "workshop.settings"
REPEAT = int(os.environ.get("BENCH_REPEAT", "40"))
FILMMAKERS, ROUNDS, PER_ROUND, CIRCLED = 20, 5, 15, 3
GOAL_MS = 150


def media_files() -> dict[str, object]:
    """One real take, its poster and thumbnail, stored once; every seeded row points at them."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from generations.dispatch import media
    from tests.media import make_video

    path = make_video(Path(os.environ["MEDIA_ROOT"]) / "source.mp4", frames=9, width=64, height=48)
    info = media.probe(path, "video/mp4")
    thumb = media.thumbnail(path, "video/mp4") or b""
    return {
        "file": default_storage.save("bench/take.mp4", ContentFile(path.read_bytes())),
        "poster": default_storage.save("bench/take-poster.png", ContentFile(info.poster_png or b"")),
        "thumbnail": default_storage.save("bench/take-thumb.jpg", ContentFile(thumb)),
        "size": path.stat().st_size,
        "width": info.width,
        "height": info.height,
        "duration": info.duration,
        "frame_count": info.frame_count,
    }


def seed(users, rounds, template, files, start: int, stop: int) -> None:
    """Generations start..stop-1 of every filmmaker in every round, one take each (bulk inserts)."""
    from django.utils import timezone

    from generations.models import Generation, Take

    now = timezone.now()
    generations = [
        Generation(
            owner=user,
            round=rnd,
            template=template,
            params={
                "prompt": f"shot {i} of {user.username}: a lighthouse at dusk, slow dolly in, {rnd.title}",
                "seed": 1000 * r + i,
                "frames": 25,
                "width": 320,
                "height": 192,
                "fps": 12,
            },
            workflow={},
            status=Generation.Status.SUCCEEDED,
            attempt=1,
            progress=100,
            finished_at=now,
        )
        for user in users
        for r, rnd in enumerate(rounds)
        for i in range(start, stop)
    ]
    Generation.objects.bulk_create(generations, batch_size=1000)
    takes = [
        Take(
            generation=g,
            attempt=1,
            filename="take.mp4",
            kind=Take.Kind.VIDEO,
            content_type="video/mp4",
            circled=int(g.params["seed"]) % 1000 < CIRCLED,
            note="keeper" if int(g.params["seed"]) % 1000 == 0 else "",
            **files,
        )
        for g in generations
    ]
    Take.objects.bulk_create(takes, batch_size=1000)


def measure(client, url: str, *, htmx: bool = False, repeat: int = REPEAT) -> dict[str, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    headers = {"HX-Request": "true"} if htmx else {}
    for _ in range(3):  # warm the template cache and the connection
        assert client.get(url, headers=headers).status_code == 200, url
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200 and response.content
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, headers=headers)
    return {
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(statistics.quantiles(times, n=10)[-1], 2),
        "queries": len(queries),
        "tiles": response.content.decode().count('class="g-tile"')
        + response.content.decode().count('class="sheet-card'),
    }


def main() -> None:
    started = time.monotonic()
    from bench.common import ensure_database, own_services

    own_services()  # a database of its own (dropped at exit), and its own Redis database
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import User
    from generations.authoring.demo import synthetic_template
    from generations.models import Round, Take

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    users = User.objects.bulk_create(
        [
            User(username=f"filmmaker{n:02d}", password="!", role=User.Role.FILMMAKER)
            for n in range(FILMMAKERS)
        ]
    )
    template = synthetic_template()
    rounds = []
    for n in range(ROUNDS):  # the first three are closed (their galleries shared), then one shared, one open
        status = Round.Status.CLOSED if n < 3 else Round.Status.OPEN
        rnd = Round.objects.create(title=f"Round {n + 1}", status=status, gallery_shared=n == 3)
        rnd.templates.add(template)
        rounds.append(rnd)
    files = media_files()
    client = Client()
    client.force_login(users[0])
    # My gallery's first page holds rounds 5 and 4 (30 tiles); "load more" goes on after round 4.
    pages = {
        "my gallery": ("/gallery/", False),
        "load more": (f"/gallery/?after={rounds[3].pk}", True),
        "shared gallery": (f"/rounds/{rounds[0].pk}/gallery/", False),
        "contact sheet": ("/gallery/contact-sheet", False),
    }

    seed(users, rounds, template, files, 0, CIRCLED)
    small = {name: measure(client, url, htmx=htmx, repeat=3) for name, (url, htmx) in pages.items()}
    small_takes = Take.objects.count()
    seed(users, rounds, template, files, CIRCLED, PER_ROUND)
    seeded_at = time.monotonic()
    full = {name: measure(client, url, htmx=htmx) for name, (url, htmx) in pages.items()}
    takes = Take.objects.count()

    print(f"Gallery pages over {takes} takes ({FILMMAKERS} filmmakers × {ROUNDS} rounds × {PER_ROUND}),")
    print(f"django.test.Client on PostgreSQL, {REPEAT} requests each (ms)")
    print(f"{'page':<16}{'median':>9}{'p90':>9}{'tiles':>7}{'queries':>9}{f'@{small_takes}':>8}")
    for name, row in full.items():
        print(
            f"{name:<16}{row['median_ms']:>9.1f}{row['p90_ms']:>9.1f}{row['tiles']:>7}"
            f"{row['queries']:>9}{small[name]['queries']:>8}"
        )
    flat = all(full[n]["queries"] == small[n]["queries"] for n in pages)
    fast = all(row["median_ms"] < GOAL_MS for row in full.values())
    print(f"goal: median < {GOAL_MS} ms each: {'met' if fast else 'MISSED'}; query counts flat: {flat}")
    print(f"(seeding {seeded_at - started:.1f} s, whole run {time.monotonic() - started:.1f} s)")
    result = {
        "bench": "gallery",
        "takes": takes,
        "repeat": REPEAT,
        "goal_ms": GOAL_MS,
        "pages": {
            name.replace(" ", "_"): {**row, f"queries_at_{small_takes}": small[name]["queries"]}
            for name, row in full.items()
        },
        "queries_flat": flat,
        "goal_met": fast,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
