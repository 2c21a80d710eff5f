"""The filmmaker's gallery: reads and writes of takes (circle, note), the rule of the round's
shared gallery, compare, remix, and the downloads (ZIP, contact sheet, CSV).

Only takes of the attempt that succeeded count, as on the round page (`selectors.takes_of`).
Every read that shows a take goes through `takes_visible_to` or `take_owned_by`."""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils.text import slugify

from accounts.models import User

from . import selectors
from .models import Generation, Round, Take, WorkflowTemplate
from .params import SpecError, parse_spec

log = logging.getLogger(__name__)

S = Generation.Status
NOTE_MAX = Take._meta.get_field("note").max_length or 500
# A page of "my takes" holds whole rounds until it has at least this many tiles.
PAGE_TAKES = 24
# A page of the shared gallery holds this many filmmakers (each with their circled takes).
PAGE_OWNERS = 10
COMPARE_MIN, COMPARE_MAX = 2, 4
CHUNK = 256 * 1024


class CircleRefused(Exception):
    """Over the round's circle limit; the message names the limit."""


class NoteRefused(Exception):
    pass


class CompareRefused(Exception):
    pass


# --- Access ----------------------------------------------------------------------------------


def _counting() -> QuerySet[Take]:
    """Takes that count: of a generation that succeeded, from the attempt that succeeded."""
    return Take.objects.filter(generation__status=S.SUCCEEDED, attempt=F("generation__attempt"))


def current_takes() -> QuerySet[Take]:
    # The resolved workflows (tens of kB of JSON each with ComfyUI) are never shown here.
    return (
        _counting()
        .select_related("generation__round", "generation__template", "generation__owner")
        .defer("generation__workflow", "generation__error_detail", "generation__template__workflow")
    )


def is_shared(rnd: Round) -> bool:
    """Everyone sees the round's circled takes once the instructor shares it or closes the round."""
    return rnd.gallery_shared or rnd.status == Round.Status.CLOSED


def sees_everything(user: User) -> bool:
    return user.is_instructor or user.is_staff


def _shared_q() -> Q:
    rnd = "generation__round__"
    shared = Q(**{f"{rnd}gallery_shared": True}) & ~Q(**{f"{rnd}status": Round.Status.DRAFT})
    return Q(circled=True) & (shared | Q(**{f"{rnd}status": Round.Status.CLOSED}))


def takes_visible_to(user: User) -> QuerySet[Take]:
    """My takes; the circled takes of shared (or closed) rounds; everything for instructors."""
    qs = current_takes()
    return qs if sees_everything(user) else qs.filter(Q(generation__owner=user) | _shared_q())


def take_visible_to(user: User, pk: int) -> Take:
    take = takes_visible_to(user).filter(pk=pk).first()
    if take is None:
        raise Http404("No such take")
    return take


def take_owned_by(user: User, pk: int) -> Take:
    """Circling and notes are the filmmaker's own: anyone else (instructors too) gets 404."""
    take = current_takes().filter(pk=pk, generation__owner=user).first()
    if take is None:
        raise Http404("No such take")
    return take


def may_see_owner(user: User, rnd: Round, owner_id: int) -> bool:
    """Whether `user` may see `owner_id`'s circled takes in the round's gallery."""
    return owner_id == user.pk or is_shared(rnd) or sees_everything(user)


def with_params(takes: Iterable[Take]) -> list[Take]:
    """Give each take `shown_params`: (name, label, value) in its template's field order (a jsonb
    column keeps its own key order), without the prompt, which tiles show on its own."""
    specs: dict[int, dict[str, str]] = {}
    result = list(takes)
    for t in result:
        template = t.generation.template
        labels = specs.setdefault(template.pk, _spec_labels(template))
        params = t.generation.params
        names = [n for n in labels if n in params] + [n for n in params if n not in labels]
        t.shown_params = [(n, labels.get(n, n), _shown(params[n])) for n in names if n != "prompt"]  # type: ignore[attr-defined]
    return result


# --- My takes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    round_id: int | None = None
    circled: bool = False
    newest: bool = True

    @classmethod
    def from_query(cls, query: Mapping[str, Any]) -> Filters:
        raw = str(query.get("round") or "")
        return cls(
            round_id=int(raw) if raw.isdigit() else None,
            circled=query.get("circled") == "1",
            newest=query.get("sort") != "old",
        )

    def query(self, **extra: Any) -> str:
        q: dict[str, Any] = {}
        if self.round_id:
            q["round"] = self.round_id
        if self.circled:
            q["circled"] = 1
        if not self.newest:
            q["sort"] = "old"
        q.update({k: v for k, v in extra.items() if v not in (None, "")})
        return urlencode(q)

    @property
    def order(self) -> tuple[str, str]:
        return ("-created_at", "-pk") if self.newest else ("created_at", "pk")


@dataclass
class Section:
    """One round of my takes: a full-state fragment, re-rendered whole on a live update."""

    round: Round
    takes: list[Take]
    total: int
    circled: int


@dataclass
class MyPage:
    rounds: list[Round]
    sections: list[Section]
    next_after: int | None


def my_rounds(user: User) -> list[Round]:
    """The rounds of my gallery: those I generated in, and any open one (new takes land there)."""
    mine = Exists(Generation.objects.filter(owner=user, round=OuterRef("pk")))
    return list(
        selectors.rounds_visible_to(user)
        .filter(mine | Q(status=Round.Status.OPEN))
        .order_by("-created_at", "-pk")
    )


def _counts(user: User, round_ids: list[int]) -> dict[int, tuple[int, int]]:
    rows = (
        _counting()
        .filter(generation__owner=user, generation__round_id__in=round_ids)
        .values("generation__round_id")
        .annotate(n=Count("pk"), c=Count("pk", filter=Q(circled=True)))
    )
    return {r["generation__round_id"]: (r["n"], r["c"]) for r in rows}


def _sections(
    user: User, rounds: list[Round], filters: Filters, counts: dict[int, tuple[int, int]]
) -> list[Section]:
    qs = current_takes().filter(generation__owner=user, generation__round__in=rounds)
    if filters.circled:
        qs = qs.filter(circled=True)
    by_round: dict[int, list[Take]] = {r.pk: [] for r in rounds}
    for take in with_params(qs.order_by(*filters.order)):
        by_round[take.generation.round_id].append(take)
    return [Section(r, by_round[r.pk], *counts.get(r.pk, (0, 0))) for r in rounds]


def my_gallery(user: User, filters: Filters, *, after: int | None = None) -> MyPage:
    """A page of my takes, whole rounds at a time (newest round first unless sorted oldest);
    four queries however many takes there are."""
    rounds = my_rounds(user)
    shown = [r for r in rounds if filters.round_id in (None, r.pk)]
    if not filters.newest:
        shown.reverse()
    if after is not None:
        ids = [r.pk for r in shown]
        shown = shown[ids.index(after) + 1 :] if after in ids else []
    counts = _counts(user, [r.pk for r in shown])
    page: list[Round] = []
    tiles = 0
    for rnd in shown:
        if page and tiles >= PAGE_TAKES:
            break
        page.append(rnd)
        total, circled = counts.get(rnd.pk, (0, 0))
        tiles += circled if filters.circled else total
    more = len(page) < len(shown)
    return MyPage(
        rounds=rounds,
        sections=_sections(user, page, filters, counts),
        next_after=page[-1].pk if more else None,
    )


def my_section(user: User, round_id: int, filters: Filters, *, takes: bool = True) -> Section | None:
    """One round of my takes as it is now (for a live update), or None if I cannot see it.
    Without `takes`, only its counts (for the section's heading)."""
    rnd = selectors.rounds_visible_to(user).filter(pk=round_id).first()
    if rnd is None:
        return None
    counts = _counts(user, [rnd.pk])
    if not takes:
        return Section(rnd, [], *counts.get(rnd.pk, (0, 0)))
    return _sections(user, [rnd], filters, counts)[0]


# --- The round's shared gallery ----------------------------------------------------------------


@dataclass
class OwnerSection:
    """One filmmaker's circled takes in a round; rendered even when empty, so that a first
    circle can appear live in it."""

    round: Round
    owner: User
    takes: list[Take]


@dataclass
class SharedPage:
    round: Round
    shared: bool
    everyone: bool
    sections: list[OwnerSection]
    next_after: str | None


def _owner_sections(rnd: Round, owners: list[User]) -> list[OwnerSection]:
    qs = current_takes().filter(generation__round=rnd, generation__owner__in=owners, circled=True)
    by_owner: dict[int, list[Take]] = {u.pk: [] for u in owners}
    for take in with_params(qs.order_by("created_at", "pk")):
        by_owner[take.generation.owner_id].append(take)
    return [OwnerSection(rnd, u, by_owner[u.pk]) for u in owners]


def shared_gallery(user: User, rnd: Round, *, after: str | None = None) -> SharedPage:
    """The round's circled takes, attributed: everyone's when the round is shared (or to an
    instructor), otherwise only the viewer's own. Pages of PAGE_OWNERS filmmakers."""
    everyone = is_shared(rnd) or sees_everything(user)
    if everyone:
        succeeded = Generation.objects.filter(owner=OuterRef("pk"), round=rnd, status=S.SUCCEEDED)
        qs = User.objects.filter(Exists(succeeded)).order_by("username")
        if after:
            qs = qs.filter(username__gt=after)
        owners = list(qs[: PAGE_OWNERS + 1])
        more = len(owners) > PAGE_OWNERS
        owners = owners[:PAGE_OWNERS]
    else:
        owners, more = ([user] if not after else []), False
    return SharedPage(
        round=rnd,
        shared=is_shared(rnd),
        everyone=everyone,
        sections=_owner_sections(rnd, owners),
        next_after=owners[-1].username if more else None,
    )


def owner_section(user: User, rnd: Round, owner_id: int) -> OwnerSection | None:
    """One filmmaker's section as `user` may see it now, or None."""
    if not may_see_owner(user, rnd, owner_id):
        return None
    owner = user if owner_id == user.pk else User.objects.filter(pk=owner_id).first()
    return _owner_sections(rnd, [owner])[0] if owner else None


# --- Circle and note -------------------------------------------------------------------------


def take_circle(*, take: Take, circled: bool) -> bool:
    """Circle or uncircle one of a filmmaker's takes; True if it changed.

    Circling holds a lock on the round's row while it counts, so two tabs (or a double click)
    circling different takes at once cannot both take the last place under the limit."""
    if not circled:
        n = Take.objects.filter(pk=take.pk, circled=True).update(circled=False)
        take.circled = False
        return n == 1
    with transaction.atomic():
        rnd = Round.objects.select_for_update(no_key=True).get(pk=take.generation.round_id)
        others = (
            _counting()
            .filter(generation__owner_id=take.generation.owner_id, generation__round=rnd, circled=True)
            .exclude(pk=take.pk)
            .count()
        )
        if others >= rnd.circle_limit:
            raise CircleRefused(
                f"You can circle at most {rnd.circle_limit} take{'s' if rnd.circle_limit != 1 else ''} "
                f"in “{rnd.title}”, and you have circled {others}: uncircle one first."
            )
        n = Take.objects.filter(pk=take.pk, circled=False).update(circled=True)
    take.circled = True
    return n == 1


def take_note_set(*, take: Take, note: str) -> None:
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise NoteRefused(f"A note is at most {NOTE_MAX} characters; this one has {len(note)}.")
    Take.objects.filter(pk=take.pk).update(note=note)
    take.note = note


def user_group(user_id: int) -> str:
    return f"gallery-user-{user_id}"


def round_group(round_id: int) -> str:
    return f"gallery-round-{round_id}"


def notify_take_changed(take: Take) -> None:
    """Ids only: the owner's gallery pages and the round's gallery re-render from the database."""
    g = take.generation
    message = {"type": "gallery.take", "id": take.pk, "owner": g.owner_id, "round": g.round_id}
    _send(user_group(g.owner_id), message)
    _send(round_group(g.round_id), message)


def notify_round_gallery_changed(round_id: int) -> None:
    """Call when a round's gallery is shared or unshared (or the round closes)."""
    _send(round_group(round_id), {"type": "gallery.round", "round": round_id})


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Live updates are best effort; the database already holds the truth.
        log.exception("could not send %s to %s", message["type"], group)


# --- Compare ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    values: list[str]

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


@dataclass
class Comparison:
    takes: list[Take]
    rows: list[Row]

    @property
    def differing(self) -> list[Row]:
        return [r for r in self.rows if r.differs]

    @property
    def same(self) -> list[Row]:
        return [r for r in self.rows if not r.differs]


def _spec_labels(template: WorkflowTemplate) -> dict[str, str]:
    try:
        return {p.name: p.label for p in parse_spec(template.param_spec)}
    except SpecError:
        return {}


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


def compare(user: User, raw_ids: Iterable[str]) -> Comparison:
    """2 to 4 takes the user may see, in the order picked, and their parameters side by side."""
    ids = list(dict.fromkeys(int(x) for x in raw_ids if str(x).isdigit()))
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        raise CompareRefused(f"Pick {COMPARE_MIN} to {COMPARE_MAX} takes to compare (you picked {len(ids)}).")
    found = {t.pk: t for t in takes_visible_to(user).filter(pk__in=ids)}
    if len(found) != len(ids):
        raise Http404("No such take")
    takes = [found[i] for i in ids]
    labels: dict[str, str] = {}
    for t in takes:  # the template's field order first, then anything else the params hold
        labels.update({k: v for k, v in _spec_labels(t.generation.template).items() if k not in labels})
        labels.update({k: k.replace("_", " ").capitalize() for k in t.generation.params if k not in labels})
    rows = [
        Row("Filmmaker", [str(t.generation.owner) for t in takes]),
        Row("Round", [t.generation.round.title for t in takes]),
        Row("Template", [t.generation.template.name for t in takes]),
        *(Row(label, [_shown(t.generation.params.get(k)) for t in takes]) for k, label in labels.items()),
        Row("Output", [f"{t.width or '?'}×{t.height or '?'}" for t in takes]),
        Row("Length", [f"{t.duration:.2f} s" if t.duration else "—" for t in takes]),
    ]
    return Comparison(takes=takes, rows=rows)


# --- Remix -----------------------------------------------------------------------------------

REMIX_FLAG = "remix"


def _seed_names(template: WorkflowTemplate) -> set[str]:
    try:
        return {p.name for p in parse_spec(template.param_spec) if p.type == "seed"} or {"seed"}
    except SpecError:
        return {"seed"}


def remix_url(*, user: User, take: Take, same_seed: bool) -> str:
    """The round page with the take's settings in the query string (its form reads them as
    initial values). A new seed is left blank, so the form picks a random one. It lands on
    an open round that offers the template: the current one, else the take's own."""
    g = take.generation
    current = selectors.round_current_for(user)
    candidates = [r for r in (current, g.round) if r is not None]
    target = next(
        (
            r
            for r in candidates
            if r.status == Round.Status.OPEN and r.templates.filter(pk=g.template_id).exists()
        ),
        candidates[0],
    )
    skip = set() if same_seed else _seed_names(g.template)
    query = {"template": g.template.slug, REMIX_FLAG: take.pk}
    query.update({k: v for k, v in g.params.items() if k not in skip and k not in query})
    return f"{reverse('round', args=[target.pk])}?{urlencode(query)}#submit-form"


def remix_initial(query: Mapping[str, Any], template: WorkflowTemplate | None) -> dict[str, Any]:
    """The submit form's initial values from a remix link; empty for any other visit."""
    if template is None or REMIX_FLAG not in query:
        return {}
    try:
        names = [p.name for p in parse_spec(template.param_spec)]
    except SpecError:
        return {}
    return {n: query[n] for n in names if n in query and n not in ("template", REMIX_FLAG)}


# --- Downloads -------------------------------------------------------------------------------


def download_name(take: Take) -> str:
    g = take.generation
    seed = g.params.get("seed")
    return f"g{g.pk}-seed{seed}-{take.filename}" if seed is not None else f"g{g.pk}-{take.filename}"


def _zip_name(take: Take) -> str:
    rnd = take.generation.round
    return f"{slugify(rnd.title) or 'round'}-r{rnd.pk}/{download_name(take)}"


def circled_takes(user: User, round_id: int | None = None) -> list[Take]:
    qs = current_takes().filter(generation__owner=user, circled=True)
    if round_id:
        qs = qs.filter(generation__round_id=round_id)
    return list(qs.order_by("generation__round__created_at", "created_at", "pk"))


class _Sink:
    """A write-only file for zipfile: it holds what was written until the generator hands it on.
    zipfile sees no tell()/seek() and so writes sizes after each file (data descriptors)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_stream(takes: list[Take], *, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """A ZIP of these takes made while it is sent: memory holds about one chunk however large
    the files. Videos and images are stored as they are (already compressed); `takes.csv`
    describes each file."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for take in takes:
            storage, name = take.file.storage, take.file.name
            info = zipfile.ZipInfo(_zip_name(take), date_time=take.created_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = storage.size(name)  # decides whether the entry needs ZIP64
            with storage.open(name, "rb") as src, archive.open(info, "w") as dst:
                while chunk := src.read(chunk_size):
                    dst.write(chunk)
                    yield sink.drain()
            if data := sink.drain():
                yield data
        manifest = zipfile.ZipInfo(
            "takes.csv", date_time=takes[0].created_at.timetuple()[:6] if takes else (1980, 1, 1, 0, 0, 0)
        )
        archive.writestr(manifest, _manifest(takes), compress_type=zipfile.ZIP_DEFLATED)
    yield sink.drain()


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(header: list[str], rows: Iterable[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def _manifest(takes: list[Take]) -> str:
    header = ["file", "round", "template", "prompt", "seed", "params", "note", "width", "height", "seconds"]
    return _csv(
        header,
        (
            [
                _zip_name(t),
                t.generation.round.title,
                t.generation.template.name,
                t.generation.prompt,
                t.generation.params.get("seed"),
                json.dumps(t.generation.params, sort_keys=True),
                t.note,
                t.width,
                t.height,
                f"{t.duration:.2f}" if t.duration else "",
            ]
            for t in takes
        ),
    )


def generations_csv(user: User) -> str:
    """Every generation of mine, one row each, with its takes, circles and notes."""
    header = [
        "generation",
        "round",
        "template",
        "status",
        "created_at",
        "finished_at",
        "prompt",
        "seed",
        "params",
        "takes",
        "circled",
        "notes",
        "error",
    ]
    generations = (
        Generation.objects.filter(owner=user)
        .select_related("round", "template")
        .prefetch_related(Prefetch("takes", queryset=Take.objects.order_by("pk")))
        .order_by("created_at", "pk")
    )
    rows = []
    for g in generations:
        takes = g.current_takes() if g.status == S.SUCCEEDED else []
        rows.append(
            [
                g.pk,
                g.round.title,
                g.template.name,
                g.status,
                g.created_at.isoformat(),
                g.finished_at.isoformat() if g.finished_at else "",
                g.prompt,
                g.params.get("seed"),
                json.dumps(g.params, sort_keys=True),
                " ".join(t.filename for t in takes),
                " ".join(t.filename for t in takes if t.circled),
                " | ".join(t.note for t in takes if t.note),
                g.error_message,
            ]
        )
    return _csv(header, rows)


def contact_sheet(user: User, filters: Filters) -> list[Section]:
    """My takes by round for printing: poster, prompt, seed, parameters. Three queries."""
    rounds = [r for r in my_rounds(user) if filters.round_id in (None, r.pk)]
    if not filters.newest:
        rounds.reverse()
    sections = _sections(user, rounds, filters, _counts(user, [r.pk for r in rounds]))
    return [s for s in sections if s.takes]
