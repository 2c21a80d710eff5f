"""The gallery's pages, actions and downloads. Thin: the work lives in the gallery's modules and
who may see what in queue.access."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from generations.files.csvfile import BOM
from generations.files.ranges import stored_file_response
from generations.files.streaming import stream_response, streamed
from generations.gallery import downloads, remix, services
from generations.gallery.compare import CompareRefused
from generations.gallery.compare import compare as compare_takes
from generations.gallery.selectors import Filters, my_section, shared_gallery
from generations.gallery.selectors import my_gallery as my_gallery_page
from generations.live.toasts import toast
from generations.models import Take
from generations.queue.access import generation_for_user, round_for_user, take_owned_by, take_visible_to
from generations.queue.selectors import circled_takes_of
from workshop.inputs import int_or_none

MINE = "generations/gallery/mine.html"
SHARED = "generations/gallery/shared.html"
TILES = "generations/gallery/tiles.html"
COMPARE = "generations/gallery/compare.html"
SHEET = "generations/gallery/contact_sheet.html"
ROUND_TILE = "generations/round.html#job-card"


def _ids(items: list[object]) -> str:
    return ",".join(str(getattr(i, "pk", i)) for i in items)


@login_required
@require_GET
def my_gallery(request: HttpRequest) -> HttpResponse:
    """My takes by round; an HTMX request with `after` is the next page (load more)."""
    filters = Filters.from_query(request.GET)
    after = request.GET.get("after", "")
    page = my_gallery_page(request.user, filters, after=int_or_none(after))
    context = {
        "page": page,
        "filters": filters,
        "me": request.user,
        "more_query": filters.query(after=page.next_after),
        # The socket re-sends the first page's rounds on (re)connect, with the same filters.
        "ws_query": filters.query(rounds=_ids([s.round for s in page.sections])),
    }
    if request.htmx and after:
        return render(request, f"{MINE}#sections-page", context)
    return render(request, MINE, context)


@login_required
@require_GET
def round_gallery(request: HttpRequest, pk: int) -> HttpResponse:
    """The round's circled takes: everyone's once shared or closed, otherwise only mine."""
    rnd = round_for_user(request.user, pk)
    after = request.GET.get("after", "")
    page = shared_gallery(request.user, rnd, after=after or None)
    context = {
        "page": page,
        "round": rnd,
        "me": request.user,
        "ws_query": f"owners={_ids([s.owner for s in page.sections])}",
    }
    if request.htmx and after:
        return render(request, f"{SHARED}#owners-page", context)
    return render(request, SHARED, context)


def _actions(request: HttpRequest, take: Take, *, status: int = 200, **extra: object) -> HttpResponse:
    """The take's circle and note controls; on my gallery page also its round's counter, and on
    the round page (its take viewer) the take's tile."""
    html = render_to_string(f"{TILES}#actions", {"t": take, "me": request.user, **extra}, request=request)
    page = request.htmx.current_url_abs_path or ""
    if status == 200 and page.startswith(reverse("gallery")):
        section = my_section(request.user, take.generation.round_id, Filters(), takes=False)
        html += render_to_string(f"{MINE}#section-head", {"s": section, "oob": True}, request=request)
    elif status == 200 and page.startswith(reverse("round", args=[take.generation.round_id])):
        generation = generation_for_user(request.user, take.generation_id)
        html += render_to_string(ROUND_TILE, {"g": generation, "tile_oob": True}, request=request)
    return HttpResponse(html, status=status)


@login_required
@require_POST
def take_circle(request: HttpRequest, pk: int) -> HttpResponse:
    take = take_owned_by(request.user, pk)
    circled = request.POST.get("circled") == "1"
    try:
        services.take_circle(take=take, circled=circled)
    except services.CircleRefused as exc:
        return toast(_actions(request, take, status=422, action_error=str(exc)), str(exc), kind="error")
    return toast(_actions(request, take), "Circled." if circled else "No longer circled.", kind="info")


@login_required
@require_POST
def take_note(request: HttpRequest, pk: int) -> HttpResponse:
    take = take_owned_by(request.user, pk)
    try:
        services.take_note_set(take=take, note=request.POST.get("note", ""))
    except services.NoteRefused as exc:
        return toast(_actions(request, take, status=422, action_error=str(exc)), str(exc), kind="error")
    # A toast as well as the line in the tile: a live push re-renders the tile a moment later.
    return toast(_actions(request, take, note_saved=True), "Note saved.")


@login_required
@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    try:
        comparison = compare_takes(request.user, request.GET.getlist("t"))
    except CompareRefused as exc:
        return render(request, COMPARE, {"error": str(exc), "me": request.user}, status=400)
    mine = [t for t in comparison.takes if t.generation.owner_id == request.user.pk]
    first = comparison.takes[0]
    fps = first.frame_count / first.duration if first.frame_count and first.duration else 24
    context = {"comparison": comparison, "me": request.user, "fps": round(fps, 3), "mine": _ids(mine)}
    return render(request, COMPARE, context)


@login_required
@require_GET
def take_remix(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Use these settings": the round page's form, filled with the take's parameters."""
    take = take_visible_to(request.user, pk)
    same_seed = request.GET.get("seed") == "same"
    return redirect(remix.remix_url(user=request.user, take=take, same_seed=same_seed))


def _media(take: Take, what: str) -> tuple[FieldFile, str] | None:
    if what == "file":
        return take.file, take.content_type
    if what == "poster":
        return (take.poster, "image/png") if take.poster else None
    # The grid's thumbnail; takes stored before thumbnails existed fall back to the poster.
    if take.thumbnail:
        return take.thumbnail, "image/jpeg"
    if take.poster:
        return take.poster, "image/png"
    return (take.file, take.content_type) if take.kind == Take.Kind.IMAGE else None


@login_required
@require_GET
def take_media(request: HttpRequest, pk: int, what: str) -> HttpResponseBase:
    """A take's file, poster or thumbnail, to whoever may see the take (Range-aware; handed to
    the proxy with X-Accel-Redirect when MEDIA_ACCEL_REDIRECT is set)."""
    take = take_visible_to(request.user, pk)
    found = _media(take, what) if what in ("file", "poster", "thumb") else None
    if found is None:
        return HttpResponse(status=404)
    field, content_type = found
    name = take.filename if what == "file" else f"{what}.{field.name.rsplit('.', 1)[-1]}"
    return streamed(request, stored_file_response(request, field, content_type=content_type, filename=name))


@login_required
@require_GET
def take_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    take = take_visible_to(request.user, pk)
    name = downloads.download_name(take)
    response = stored_file_response(
        request, take.file, content_type=take.content_type, filename=name, attachment=True
    )
    return streamed(request, response)


@login_required
@require_GET
def circled_zip(request: HttpRequest) -> HttpResponseBase:
    """My circled takes (of one round with `?round=`) as one ZIP, streamed as it is made."""
    round_id = int_or_none(request.GET.get("round", ""))
    takes = circled_takes_of(request.user, round_id)
    name = (
        f"circled-takes-{slugify(request.user.get_username()) or 'me'}{f'-r{round_id}' if round_id else ''}"
    )
    response = stream_response(
        request, downloads.circled_zip(takes), content_type="application/zip", filename=f"{name}.zip"
    )
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def contact_sheet(request: HttpRequest) -> HttpResponse:
    filters = Filters.from_query(request.GET)
    context = {
        "sections": downloads.contact_sheet(request.user, filters),
        "filters": filters,
        "me": request.user,
    }
    return render(request, SHEET, context)


@login_required
@require_GET
def generations_csv(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        BOM + downloads.generations_csv(request.user), content_type="text/csv; charset=utf-8"
    )
    name = slugify(request.user.get_username()) or "me"
    response["Content-Disposition"] = content_disposition_header(True, f"generations-{name}.csv")
    # Every prompt of the filmmaker: for no shared cache, and not to be kept on disk.
    response["Cache-Control"] = "private, no-store"
    return response
