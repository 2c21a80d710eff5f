"""The gallery's pages, actions and downloads. Thin: access rules and work live in gallery.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from . import gallery, selectors
from .models import Take
from .ranged import stored_file_response

MINE = "generations/gallery/mine.html"
SHARED = "generations/gallery/shared.html"
TILES = "generations/gallery/tiles.html"
COMPARE = "generations/gallery/compare.html"
SHEET = "generations/gallery/contact_sheet.html"


def _ids(items: list[object]) -> str:
    return ",".join(str(getattr(i, "pk", i)) for i in items)


@login_required
@require_GET
def my_gallery(request: HttpRequest) -> HttpResponse:
    """My takes by round; an HTMX request with `after` is the next page (load more)."""
    filters = gallery.Filters.from_query(request.GET)
    after = request.GET.get("after", "")
    page = gallery.my_gallery(request.user, filters, after=int(after) if after.isdigit() else None)
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
    rnd = selectors.round_for_user(request.user, pk)
    after = request.GET.get("after", "")
    page = gallery.shared_gallery(request.user, rnd, after=after or None)
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
    """The take's circle and note controls; on my gallery page also its round's counter."""
    html = render_to_string(f"{TILES}#actions", {"t": take, "me": request.user, **extra}, request=request)
    if status == 200 and (request.htmx.current_url_abs_path or "").startswith(reverse("gallery")):
        section = gallery.my_section(request.user, take.generation.round_id, gallery.Filters(), takes=False)
        html += render_to_string(f"{MINE}#section-head", {"s": section, "oob": True}, request=request)
    return HttpResponse(html, status=status)


@login_required
@require_POST
def take_circle(request: HttpRequest, pk: int) -> HttpResponse:
    take = gallery.take_owned_by(request.user, pk)
    try:
        changed = gallery.take_circle(take=take, circled=request.POST.get("circled") == "1")
    except gallery.CircleRefused as exc:
        return _actions(request, take, status=422, action_error=str(exc))
    if changed:
        gallery.notify_take_changed(take)
    return _actions(request, take)


@login_required
@require_POST
def take_note(request: HttpRequest, pk: int) -> HttpResponse:
    take = gallery.take_owned_by(request.user, pk)
    try:
        gallery.take_note_set(take=take, note=request.POST.get("note", ""))
    except gallery.NoteRefused as exc:
        return _actions(request, take, status=422, action_error=str(exc))
    gallery.notify_take_changed(take)
    return _actions(request, take, note_saved=True)


@login_required
@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    try:
        comparison = gallery.compare(request.user, request.GET.getlist("t"))
    except gallery.CompareRefused as exc:
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
    take = gallery.take_visible_to(request.user, pk)
    same_seed = request.GET.get("seed") == "same"
    return redirect(gallery.remix_url(user=request.user, take=take, same_seed=same_seed))


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
    take = gallery.take_visible_to(request.user, pk)
    found = _media(take, what) if what in ("file", "poster", "thumb") else None
    if found is None:
        return HttpResponse(status=404)
    field, content_type = found
    name = take.filename if what == "file" else f"{what}.{field.name.rsplit('.', 1)[-1]}"
    return _streamed(request, stored_file_response(request, field, content_type=content_type, filename=name))


@login_required
@require_GET
def take_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    take = gallery.take_visible_to(request.user, pk)
    name = gallery.download_name(take)
    response = stored_file_response(
        request, take.file, content_type=take.content_type, filename=name, attachment=True
    )
    return _streamed(request, response)


@login_required
@require_GET
def circled_zip(request: HttpRequest) -> HttpResponseBase:
    """My circled takes (of one round with `?round=`) as one ZIP, streamed as it is made."""
    raw = request.GET.get("round", "")
    round_id = int(raw) if raw.isdigit() else None
    takes = gallery.circled_takes(request.user, round_id)
    name = (
        f"circled-takes-{slugify(request.user.get_username()) or 'me'}{f'-r{round_id}' if round_id else ''}"
    )
    response = StreamingHttpResponse(gallery.zip_stream(takes), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    response["Cache-Control"] = "private, no-store"
    return _streamed(request, response)


@login_required
@require_GET
def contact_sheet(request: HttpRequest) -> HttpResponse:
    filters = gallery.Filters.from_query(request.GET)
    context = {
        "sections": gallery.contact_sheet(request.user, filters),
        "filters": filters,
        "me": request.user,
    }
    return render(request, SHEET, context)


@login_required
@require_GET
def generations_csv(request: HttpRequest) -> HttpResponse:
    # The BOM makes spreadsheets read the prompts as UTF-8.
    response = HttpResponse(
        "\ufeff" + gallery.generations_csv(request.user), content_type="text/csv; charset=utf-8"
    )
    name = slugify(request.user.get_username()) or "me"
    response["Content-Disposition"] = f'attachment; filename="generations-{name}.csv"'
    return response


def _streamed(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Under ASGI (daphne) Django reads a synchronous iterator whole into memory before it sends
    a byte; give it an asynchronous one that reads one chunk at a time in a worker thread."""
    if (
        isinstance(request, ASGIRequest)
        and isinstance(response, StreamingHttpResponse)
        and not response.is_async
    ):
        response.streaming_content = _one_chunk_at_a_time(iter(response.streaming_content))
    return response


async def _one_chunk_at_a_time(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    step = sync_to_async(next, thread_sensitive=False)
    while (chunk := await step(chunks, None)) is not None:
        yield chunk
