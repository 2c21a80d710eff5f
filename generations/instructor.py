"""The instructor's panel: the workshop record, the round lifecycle, the brief's reference
images, the live room's figures, the spend, announcements, the spotlight and the exports.

Writes are compare-and-sets like those in services.py and return what changed; the views then
tell the live pages (notify), as they do for the filmmakers' own actions."""

from __future__ import annotations

import csv
import json
import os
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import IO, Any

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.text import get_valid_filename, slugify

from accounts.models import User

from . import autoscale, broker, costs, eta, fleet, selectors, services
from .models import Announcement, Generation, Round, Take, Workshop

S = Generation.Status
R = Round.Status


class PanelRefused(Exception):
    """An action that must change nothing; the message is for the instructor."""


# --- The workshop ----------------------------------------------------------------------------


def workshop_current() -> Workshop | None:
    """The workshop the panel runs: the latest one created."""
    return Workshop.objects.select_related("spotlight").first()


def workshop_get() -> Workshop:
    """The current workshop, created on first need (announcements and the spotlight hang on it)."""
    return workshop_current() or Workshop.objects.create(name="Workshop")


# --- Round lifecycle -------------------------------------------------------------------------


def _transition(rnd: Round, *, to: str, allowed: tuple[str, ...], verb: str, **changes: Any) -> None:
    n = Round.objects.filter(pk=rnd.pk, status__in=allowed).update(status=to, **changes)
    rnd.refresh_from_db()
    if n != 1:
        state = rnd.get_status_display().lower()
        raise PanelRefused(f"The round “{rnd.title}” is {state}: it cannot be {verb}.")


def round_open(*, rnd: Round) -> None:
    """Draft, paused or closed → open. The latest opened round is where filmmakers land."""
    now = timezone.now()
    # Opening a round opens its burst window (see burst.py).
    _transition(
        rnd,
        to=R.OPEN,
        allowed=(R.DRAFT, R.PAUSED, R.CLOSED),
        verb="opened",
        opened_at=now,
        burst_opened_at=now,
        burst_closed_at=None,
    )


def round_pause(*, rnd: Round) -> None:
    """Open → paused: new submissions are refused (generation_create checks the status under the
    round's lock); jobs already queued or running go on."""
    _transition(rnd, to=R.PAUSED, allowed=(R.OPEN,), verb="paused")


def round_close_preview(rnd: Round) -> int:
    """How many queued generations closing the round would cancel now (for the confirmation)."""
    return Generation.objects.filter(round=rnd, status=S.QUEUED).count()


def round_close(*, rnd: Round) -> list[Generation]:
    """Open or paused → closed, then cancel its queued generations; running ones finish.
    Returns the generations it cancelled."""
    # The UPDATE needs the round's row lock, which generation_create holds while it checks the
    # status: a submission that saw the round open commits first, and none starts after; so
    # the list below is complete.
    _transition(rnd, to=R.CLOSED, allowed=(R.OPEN, R.PAUSED), verb="closed")
    queued = list(Generation.objects.filter(round=rnd, status=S.QUEUED).select_related("template"))
    return [g for g in queued if services.generation_cancel(generation=g)]


# --- The brief's reference images --------------------------------------------------------------
# Stored with Django's storage under briefs/r<round id>/; the folder is the list (no model).

BRIEF_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
MAX_BRIEF_IMAGE_BYTES = 20 * 1024 * 1024


def _brief_dir(rnd: Round) -> str:
    return f"briefs/r{rnd.pk}"


def brief_images(rnd: Round) -> list[str]:
    try:
        _dirs, files = default_storage.listdir(_brief_dir(rnd))
    except FileNotFoundError:
        return []
    return sorted(f for f in files if PurePosixPath(f).suffix.lower() in BRIEF_IMAGE_TYPES)


def _is_image(head: bytes, suffix: str) -> bool:
    """The file starts like the image its name claims to be (never serve HTML as an image)."""
    if suffix == ".png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if suffix in (".jpg", ".jpeg"):
        return head.startswith(b"\xff\xd8\xff")
    if suffix == ".gif":
        return head.startswith((b"GIF87a", b"GIF89a"))
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def brief_image_add(*, rnd: Round, upload: UploadedFile) -> str:
    """Store one reference image; returns its stored name (a taken name gets a suffix)."""
    name = get_valid_filename(PurePosixPath(upload.name or "image").name)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in BRIEF_IMAGE_TYPES:
        raise PanelRefused(f"{upload.name}: use a PNG, JPEG, WebP or GIF image.")
    if (upload.size or 0) > MAX_BRIEF_IMAGE_BYTES:
        raise PanelRefused(f"{upload.name} is larger than {MAX_BRIEF_IMAGE_BYTES // 1024**2} MB.")
    head = upload.read(16)
    upload.seek(0)
    if not _is_image(head, suffix):
        raise PanelRefused(f"{upload.name} is not a {suffix[1:].upper()} image.")
    stored = default_storage.save(f"{_brief_dir(rnd)}/{name}", upload)
    return PurePosixPath(stored).name


def brief_image_open(rnd: Round, name: str) -> tuple[IO[bytes], int, str] | None:
    """(file, size, content type) of one of the round's images, or None."""
    if name not in brief_images(rnd):
        return None
    path = f"{_brief_dir(rnd)}/{name}"
    return (
        default_storage.open(path, "rb"),
        default_storage.size(path),
        BRIEF_IMAGE_TYPES[PurePosixPath(name).suffix.lower()],
    )


def brief_image_delete(*, rnd: Round, name: str) -> bool:
    if name not in brief_images(rnd):
        return False
    default_storage.delete(f"{_brief_dir(rnd)}/{name}")
    return True


# --- Spend -----------------------------------------------------------------------------------


def gpu_price_per_hour() -> Decimal:
    """GPU_PRICE_PER_HOUR (settings, else the environment; default 3.0) until the fleet issue
    gives each worker its own price."""
    raw = getattr(settings, "GPU_PRICE_PER_HOUR", None)
    if raw is None:
        raw = os.environ.get("GPU_PRICE_PER_HOUR") or "3.0"
    try:
        price = Decimal(str(raw))
    except InvalidOperation:
        raise ImproperlyConfigured(f"GPU_PRICE_PER_HOUR={raw!r} is not a number") from None
    if price < 0 or not price.is_finite():
        raise ImproperlyConfigured(f"GPU_PRICE_PER_HOUR={raw!r} must be zero or more")
    return price


def cost_of(gpu_seconds: float, price_per_hour: Decimal) -> Decimal:
    return (Decimal(str(gpu_seconds)) * price_per_hour / 3600).quantize(Decimal("0.0001"))


def gpu_seconds_of(g: Generation, now: datetime | None = None) -> float:
    """GPU time of the attempt that ran last: finished − started, or so far when running. A lost
    attempt's time is not known (its start was overwritten by the next one)."""
    if g.started_at is None:
        return 0.0
    if g.status == S.RUNNING:
        return max(((now or timezone.now()) - g.started_at).total_seconds(), 0.0)
    if g.status in Generation.TERMINAL and g.finished_at is not None:
        return max((g.finished_at - g.started_at).total_seconds(), 0.0)
    return 0.0


@dataclass(frozen=True)
class Spend:
    gpu_seconds: float
    price_per_hour: Decimal
    budget: Decimal
    # What the workers themselves cost (online time billed at their granularity × their price).
    fleet: costs.Spend | None = None

    @property
    def from_fleet(self) -> bool:
        return self.fleet is not None and self.fleet.total > 0

    @property
    def cost(self) -> Decimal:
        if self.fleet is not None and self.from_fleet:
            return Decimal(str(self.fleet.total)).quantize(Decimal("0.01"))
        return cost_of(self.gpu_seconds, self.price_per_hour).quantize(Decimal("0.01"))

    @property
    def utilisation(self) -> int | None:
        return round(self.fleet.utilisation * 100) if self.fleet is not None and self.from_fleet else None

    @property
    def percent(self) -> int | None:
        return int(self.cost * 100 / self.budget) if self.budget > 0 else None

    @property
    def over(self) -> bool:
        return self.budget > 0 and self.cost > self.budget


def _of_workshop(qs: QuerySet[Generation], workshop: Workshop | None) -> QuerySet[Generation]:
    # Rounds made outside the panel (the demo, the admin) have no workshop: they count to the current one.
    if workshop is None:
        return qs
    return qs.filter(Q(round__workshop=workshop) | Q(round__workshop__isnull=True))


def spend_for(workshop: Workshop | None) -> Spend:
    """What the workers cost when they report prices; else GPU seconds of finished and running
    generations × GPU_PRICE_PER_HOUR."""
    qs = _of_workshop(Generation.objects.filter(started_at__isnull=False), workshop)
    done = (
        qs.filter(status__in=Generation.TERMINAL, finished_at__isnull=False).aggregate(
            t=Sum(F("finished_at") - F("started_at"))
        )["t"]
        or timedelta()
    )
    now = timezone.now()
    running = sum(
        (
            (now - started).total_seconds()
            for started in qs.filter(status=S.RUNNING).values_list("started_at", flat=True)
        ),
        0.0,
    )
    return Spend(
        gpu_seconds=max(done.total_seconds(), 0.0) + running,
        price_per_hour=gpu_price_per_hour(),
        budget=workshop.gpu_budget if workshop else Decimal(0),
        fleet=costs.spend(),
    )


# --- The live room ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FilmmakerRow:
    user: User
    queued: int
    running: int
    done: int
    failed: int
    circled: int
    quota: selectors.Quota | None


@dataclass(frozen=True)
class WorkerRow:
    name: str
    state: str
    queues: tuple[str, ...]
    generation: Generation | None
    generation_id: int | None
    age: float
    # Carried by heartbeats once the fleet issue lands; blank until then.
    provider: str = ""
    gpu: str = ""


def circled_takes(rnd: Round) -> list[Take]:
    """The round's circled takes (of the attempt that succeeded), oldest first."""
    return list(
        Take.objects.filter(
            generation__round=rnd,
            generation__status=S.SUCCEEDED,
            attempt=F("generation__attempt"),
            circled=True,
        )
        .select_related("generation__owner")
        .order_by("created_at", "pk")
    )


def room_filmmakers(rnd: Round) -> list[FilmmakerRow]:
    """Everyone the round expects (its enrolled filmmakers, else every active filmmaker) and
    anyone who submitted in it, with their counts and quota left."""
    counts: dict[int, Counter[str]] = {}
    for owner_id, status, n in (
        Generation.objects.filter(round=rnd)
        .values("owner_id", "status")
        .annotate(n=Count("id"))
        .values_list("owner_id", "status", "n")
    ):
        counts.setdefault(owner_id, Counter())[status] = n
    circled = Counter(t.generation.owner_id for t in circled_takes(rnd))
    enrolled = list(rnd.filmmakers.values_list("pk", flat=True))
    expected = Q(pk__in=enrolled) if enrolled else Q(role=User.Role.FILMMAKER, is_active=True)
    people = User.objects.filter(expected | Q(pk__in=counts)).order_by("username")
    rows = []
    for user in people:
        c = counts.get(user.pk, Counter())
        rows.append(
            FilmmakerRow(
                user=user,
                queued=c[S.QUEUED],
                running=c[S.DISPATCHED] + c[S.RUNNING],
                done=c[S.SUCCEEDED],
                failed=c[S.FAILED],
                circled=circled[user.pk],
                quota=None if user.is_instructor else selectors.quota_for(user, rnd),
            )
        )
    return rows


def room_workers(conn: redis.Redis) -> list[WorkerRow] | None:
    """The live GPU workers from their heartbeats (None when Redis does not answer)."""
    try:
        infos = fleet.workers(conn)
    except redis.RedisError:
        return None
    ids = [w.generation_id for w in infos if w.generation_id]
    jobs = {g.pk: g for g in Generation.objects.filter(pk__in=ids).select_related("owner", "round")}
    now = time.time()
    return [
        WorkerRow(
            name=w.name,
            state=w.state,
            queues=w.queues,
            generation=jobs.get(w.generation_id) if w.generation_id else None,
            generation_id=w.generation_id,
            age=w.age(now),
            provider=str(getattr(w, "provider", "") or ""),
            gpu=str(getattr(w, "gpu", "") or ""),
        )
        for w in infos
    ]


def _drain_seconds(estimates: dict[int, eta.Estimate], in_flight: list[Generation]) -> float:
    """Until the last queued job is done (eta's figures), else until the running ones are."""
    if estimates:
        return max(e.done_in for e in estimates.values())
    rates: dict[int, float | None] = {}
    now = timezone.now()
    left = [
        eta.duration(g.template, g.params, rates)
        - ((now - g.started_at).total_seconds() if g.started_at else 0)
        for g in in_flight
    ]
    return max([0.0, *left])


def room_state(rnd: Round) -> dict[str, Any]:
    """Everything the live room shows, read afresh (the page, an HTMX answer and each push)."""
    conn = broker.connection()
    rnd.refresh_from_db()
    by_status = dict(
        Generation.objects.filter(round=rnd)
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    active = list(
        Generation.objects.filter(status__in=(S.QUEUED, *Generation.IN_FLIGHT))
        .select_related("owner", "template", "round")
        .order_by("created_at")
    )
    try:
        estimates = eta.estimates(conn)
    except redis.RedisError:
        estimates = {}
    queued = [g for g in active if g.status == S.QUEUED and g.round_id == rnd.pk]
    for g in queued:
        g.estimate = estimates.get(g.pk)  # type: ignore[attr-defined]
    queued.sort(key=lambda g: (g.estimate.position if g.estimate else 10**9, g.created_at))  # type: ignore[attr-defined]
    in_flight = [g for g in active if g.status in Generation.IN_FLIGHT]
    finished = list(
        Generation.objects.filter(round=rnd, status__in=Generation.TERMINAL)
        .select_related("owner", "template")
        .prefetch_related("takes")
        .order_by("-finished_at", "-pk")[:12]
    )
    workshop = workshop_current()
    return {
        "round": rnd,
        "workshop": workshop,
        "counts": {s.value: by_status.get(s.value, 0) for s in S},
        "queued": queued,
        "running": [g for g in in_flight if g.round_id == rnd.pk],
        "elsewhere": sum(1 for g in active if g.round_id != rnd.pk),
        "finished": finished,
        "drain_seconds": _drain_seconds(estimates, in_flight),
        "workers": room_workers(conn),
        "filmmakers": room_filmmakers(rnd),
        "spend": spend_for(workshop),
        "spotlight": spotlight_current(),
        "circled_count": len(circled_takes(rnd)),
        "close_count": by_status.get(S.QUEUED, 0),
        "burst": _burst_state(rnd),
        "desired": autoscale.published(conn).get("video", 0),
        "warm_default": max(len(room_filmmakers(rnd)) // 2, 1),
    }


def _burst_state(rnd: Round) -> dict[str, Any]:
    """The burst window as the live room shows it: open or not, seconds left, who has started."""
    from . import burst

    window = burst.window_of(rnd)
    left = burst.seconds_left(rnd)
    if window is None or left <= 0:
        return {"open": False, "left": 0, "expected": 0, "started": 0}
    in_flight_or_done = set(
        Generation.objects.filter(round=rnd, owner_id__in=window.expected)
        .filter(status__in=(*Generation.IN_FLIGHT, S.SUCCEEDED))
        .values_list("owner_id", flat=True)
    )
    return {
        "open": True,
        "left": int(left),
        "expected": len(window.expected),
        "started": len(in_flight_or_done),
    }


# --- Announcements ---------------------------------------------------------------------------


def announcements_active() -> list[Announcement]:
    """The banners on every filmmaker's page, newest first."""
    qs = Announcement.objects.filter(active=True)
    workshop = workshop_current()
    if workshop is not None:
        qs = qs.filter(Q(workshop=workshop) | Q(workshop__isnull=True))
    return list(qs.order_by("-created_at")[:5])


def announcement_create(*, text: str, by: User) -> Announcement:
    text = " ".join(text.split())
    if not text:
        raise PanelRefused("Type the announcement first.")
    if len(text) > 500:
        raise PanelRefused("An announcement holds at most 500 characters.")
    return Announcement.objects.create(workshop=workshop_get(), text=text, created_by=by)


def announcement_withdraw(*, announcement: Announcement) -> bool:
    n = Announcement.objects.filter(pk=announcement.pk, active=True).update(active=False)
    return n == 1


# --- The spotlight ---------------------------------------------------------------------------


def spotlight_current() -> Take | None:
    workshop = Workshop.objects.first()
    if workshop is None or workshop.spotlight_id is None:
        return None
    return (
        Take.objects.select_related("generation__owner", "generation__round")
        .filter(pk=workshop.spotlight_id)
        .first()
    )


def spotlight_set(*, take: Take | None) -> None:
    workshop = workshop_get()
    Workshop.objects.filter(pk=workshop.pk).update(spotlight=take)


def spotlight_next(*, rnd: Round) -> Take | None:
    """Step to the round's next circled take (after the one on screen; the first when the screen
    shows none or another round's take). Two clicks at once step once."""
    takes = circled_takes(rnd)
    if not takes:
        return None
    workshop = workshop_get()
    current = workshop.spotlight_id
    ids = [t.pk for t in takes]
    chosen = takes[(ids.index(current) + 1) % len(takes)] if current in ids else takes[0]
    Workshop.objects.filter(pk=workshop.pk, spotlight_id=current).update(spotlight=chosen)
    return spotlight_current()


# --- Exports ---------------------------------------------------------------------------------


def circled_takes_of(user: User) -> list[Take]:
    """One filmmaker's circled takes, across the rounds, round by round."""
    return list(
        Take.objects.filter(
            generation__owner=user,
            generation__status=S.SUCCEEDED,
            attempt=F("generation__attempt"),
            circled=True,
        )
        .select_related("generation__round", "generation__template")
        .order_by("generation__round__created_at", "created_at", "pk")
    )


def exports_people() -> list[tuple[User, int]]:
    """Filmmakers (and whoever else has circled takes) with their circled counts."""
    counts = Counter(
        dict(
            Take.objects.filter(
                circled=True, generation__status=S.SUCCEEDED, attempt=F("generation__attempt")
            )
            .values("generation__owner_id")
            .annotate(n=Count("id"))
            .values_list("generation__owner_id", "n")
        )
    )
    people = User.objects.filter(Q(role=User.Role.FILMMAKER) | Q(pk__in=counts)).order_by("username")
    return [(u, counts[u.pk]) for u in people]


class _Pipe:
    """A write-only file for ZipFile: what it writes is collected and handed out in pieces."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _zip_name(take: Take) -> str:
    rnd = take.generation.round
    folder = f"{slugify(rnd.title) or 'round'}-{rnd.pk}"
    return f"{folder}/g{take.generation_id}-{get_valid_filename(take.filename)}"


def zip_stream(takes: Iterable[Take], *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """A ZIP of the takes, produced piece by piece: memory stays at about one chunk whatever the
    total. Files are stored, not deflated (video is compressed already); takes.csv lists what
    each file is (prompt, seed, round)."""
    pipe = _Pipe()
    index = [["file", "round", "generation", "template", "prompt", "seed", "note"]]
    # Not seekable: ZipFile writes each entry's sizes after its data (a data descriptor).
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        for take in takes:
            g = take.generation
            name = _zip_name(take)
            try:
                src = take.file.open("rb")
            except FileNotFoundError:
                # One lost file must not break the whole archive: say so in the index instead.
                name = f"(missing) {name}"
            else:
                info = zipfile.ZipInfo(name, date_time=timezone.localtime(take.created_at).timetuple()[:6])
                info.file_size = take.size  # ZipFile decides from it whether the entry needs ZIP64
                with src, archive.open(info, mode="w") as dest:
                    while chunk := src.read(chunk_size):
                        dest.write(chunk)
                        yield pipe.take()
            seed = str(g.params.get("seed", ""))
            index.append([name, g.round.title, str(g.pk), g.template.name, g.prompt, seed, take.note])
            yield pipe.take()
        archive.writestr("takes.csv", "".join(_csv_line(row) for row in index))
    yield pipe.take()


class _Line:
    def write(self, value: str) -> str:
        return value


_line_writer = csv.writer(_Line())


def _safe_cell(value: object) -> object:
    # A prompt that starts with = + - @ would run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_line(row: Iterable[object]) -> str:
    return _line_writer.writerow([_safe_cell(v) for v in row])


CSV_COLUMNS = [
    "generation",
    "round",
    "filmmaker",
    "name",
    "template",
    "status",
    "priority",
    "attempts",
    "worker",
    "submitted_at",
    "started_at",
    "finished_at",
    "wait_seconds",
    "gpu_seconds",
    "cost",
    "prompt",
    "seed",
    "params",
    "takes",
    "circled",
    "error",
]


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def generations_csv(qs: QuerySet[Generation] | None = None) -> Iterator[bytes]:
    """Every generation (oldest first) with its parameters, durations, worker and cost, one row
    at a time. The cost is GPU seconds × GPU_PRICE_PER_HOUR."""
    price = gpu_price_per_hour()
    now = timezone.now()
    current = Q(takes__attempt=F("attempt"))
    rows = (
        (qs if qs is not None else Generation.objects.all())
        .select_related("round", "owner", "template")
        .annotate(
            n_takes=Count("takes", filter=current),
            n_circled=Count("takes", filter=current & Q(takes__circled=True)),
        )
        .order_by("created_at", "pk")
    )
    yield "\ufeff".encode()  # spreadsheets then read the file as UTF-8
    yield _csv_line(CSV_COLUMNS).encode()
    for g in rows.iterator(chunk_size=500):
        gpu = gpu_seconds_of(g, now)
        wait = (g.started_at - g.created_at).total_seconds() if g.started_at else None
        yield _csv_line(
            [
                g.pk,
                g.round.title,
                g.owner.username,
                g.owner.get_full_name(),
                g.template.slug,
                g.status,
                "yes" if g.priority else "",
                g.attempt,
                g.worker,
                _iso(g.created_at),
                _iso(g.started_at),
                _iso(g.finished_at),
                f"{wait:.1f}" if wait is not None else "",
                f"{gpu:.1f}",
                f"{cost_of(gpu, price):.4f}",
                g.prompt,
                g.params.get("seed", ""),
                json.dumps(g.params, sort_keys=True),
                g.n_takes,  # type: ignore[attr-defined]
                g.n_circled,  # type: ignore[attr-defined]
                g.error_message,
            ]
        ).encode()
