"""The instructor's panel: the workshop, rounds and their lifecycle, the live room and its
actions, announcements, the spotlight and /screen, the exports. Every view is for instructors
only (filmmakers get 403), except the brief's images, which whoever sees the round may load."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from accounts.views import instructor_required

from . import autoscale, broker, burst, gallery, instructor, notify, selectors, services
from .instructor import PanelRefused
from .models import Announcement, Generation, Round, Take, Workshop

PANEL = "generations/instructor/panel.html"
ROOM = "generations/instructor/room.html"
SPOTLIGHT = "generations/instructor/spotlight_now.html"
S = Generation.Status

# --- Forms -----------------------------------------------------------------------------------


class WorkshopForm(forms.ModelForm):
    class Meta:
        model = Workshop
        fields = ["name", "date", "gpu_budget"]
        labels = {"gpu_budget": "GPU budget"}
        widgets = {"date": forms.DateInput(attrs={"type": "date"})}


class _MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class _MultipleFileField(forms.FileField):
    widget = _MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = data if isinstance(data, list | tuple) else [data]
        return [super(_MultipleFileField, self).clean(f, initial) for f in files if f]


class RoundForm(forms.ModelForm):
    images = _MultipleFileField(
        required=False,
        label="Reference images",
        help_text="PNG, JPEG, WebP or GIF; shown under the brief on every filmmaker's page.",
        widget=_MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/webp,image/gif"}),
    )

    class Meta:
        model = Round
        fields = ["title", "brief", "templates", "quota", "circle_limit", "gallery_shared"]
        labels = {"circle_limit": "Circle-take limit", "gallery_shared": "Shared gallery"}
        widgets = {
            "templates": forms.CheckboxSelectMultiple,
            "brief": forms.Textarea(attrs={"rows": 6}),
        }


# --- Helpers ---------------------------------------------------------------------------------


def _round(pk: int) -> Round:
    return get_object_or_404(Round, pk=pk)


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Back to the page the form came from: htmx reloads it; a plain form is redirected to its
    `next` (on this site), else to `default`."""
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Refresh": "true"})
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(default)


def _room_live(request: HttpRequest, rnd: Round) -> HttpResponse:
    """The live room as it is now: an HTMX action swaps it in place (the page's WebSocket too)."""
    return HttpResponse(render_to_string(f"{ROOM}#room-live", instructor.room_state(rnd), request=request))


def _streaming(
    request: HttpRequest,
    chunks: Iterator[bytes],
    *,
    content_type: str,
    filename: str = "",
    size: int | None = None,
) -> StreamingHttpResponse:
    # Under ASGI (daphne) Django reads a synchronous iterator to the end before sending a byte;
    # an asynchronous one that pulls a piece at a time keeps memory flat whatever the size.
    content = _one_at_a_time(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=content_type)
    if filename:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    if size is not None:
        response["Content-Length"] = str(size)
    return response


def _read(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(256 * 1024):
            yield chunk


async def _one_at_a_time(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    done = b"\0done"
    pull = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await pull(chunks, done)) is not done:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=True)()


# --- The panel: the workshop, rounds, announcements ------------------------------------------


def _panel_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    workshop = instructor.workshop_current()
    rounds = Round.objects.annotate(
        n_queued=Count("generations", filter=Q(generations__status=S.QUEUED)),
        n_running=Count("generations", filter=Q(generations__status__in=Generation.IN_FLIGHT)),
        n_done=Count("generations", filter=Q(generations__status=S.SUCCEEDED)),
    ).order_by("-created_at")
    return {
        "workshop": workshop,
        "workshop_form": extra.pop("workshop_form", None) or WorkshopForm(instance=workshop),
        "rounds": rounds,
        "announcements": instructor.announcements_active(),
        "spend": instructor.spend_for(workshop),
        **extra,
    }


@instructor_required
@require_GET
def panel(request: HttpRequest) -> HttpResponse:
    return render(request, PANEL, _panel_context(request))


@instructor_required
@require_POST
def workshop_save(request: HttpRequest) -> HttpResponse:
    form = WorkshopForm(request.POST, instance=instructor.workshop_current())
    if not form.is_valid():
        return render(request, PANEL, _panel_context(request, workshop_form=form), status=422)
    form.save()
    notify.room_changed()
    messages.success(request, "Workshop saved.")
    return redirect("instructor-panel")


def _bound(request: HttpRequest) -> tuple[Any, Any]:
    return (request.POST, request.FILES) if request.method == "POST" else (None, None)


def _save_round(request: HttpRequest, form: RoundForm) -> Round | None:
    """Saves the round and its images; None (with the errors on the form) when something is wrong."""
    if not form.is_valid():
        return None
    rnd = form.save(commit=False)
    if rnd.workshop_id is None:
        rnd.workshop = instructor.workshop_get()
    rnd.save()
    form.save_m2m()
    for upload in form.cleaned_data["images"]:
        try:
            instructor.brief_image_add(rnd=rnd, upload=upload)
        except PanelRefused as exc:
            messages.error(request, str(exc))
    notify.round_changed(round_id=rnd.pk)
    if "gallery_shared" in form.changed_data:
        gallery.notify_round_gallery_changed(rnd.pk)  # open shared galleries show or hide at once
    return rnd


@instructor_required
@require_http_methods(["GET", "POST"])
def round_create(request: HttpRequest) -> HttpResponse:
    form = RoundForm(*_bound(request))
    if request.method == "POST" and (rnd := _save_round(request, form)):
        messages.success(request, f"Round “{rnd.title}” created as a draft: open it when you're ready.")
        return redirect("instructor-room", pk=rnd.pk)
    status = 422 if request.method == "POST" else 200
    return render(request, "generations/instructor/round_form.html", {"form": form}, status=status)


@instructor_required
@require_http_methods(["GET", "POST"])
def round_edit(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    form = RoundForm(*_bound(request), instance=rnd)
    if request.method == "POST" and _save_round(request, form):
        messages.success(request, "Round saved: filmmakers see the new brief at once.")
        return redirect("instructor-room", pk=rnd.pk)
    context = {"form": form, "round": rnd, "images": instructor.brief_images(rnd)}
    status = 422 if request.method == "POST" else 200
    return render(request, "generations/instructor/round_form.html", context, status=status)


@instructor_required
@require_POST
def round_image_delete(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    rnd = _round(pk)
    if instructor.brief_image_delete(rnd=rnd, name=name):
        notify.round_changed(round_id=rnd.pk)
    return redirect("instructor-round-edit", pk=rnd.pk)


@instructor_required
@require_POST
def round_open(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    try:
        instructor.round_open(rnd=rnd)
    except PanelRefused as exc:
        messages.error(request, str(exc))
    else:
        notify.round_changed(round_id=rnd.pk)
        messages.success(request, f"“{rnd.title}” is open: filmmakers can submit.")
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


@instructor_required
@require_POST
def warm(request: HttpRequest) -> HttpResponse:
    """Warm N workers now: a floor for the autoscaler for 15 minutes, before a demo."""
    raw = request.POST.get("workers", "")
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        return HttpResponse("Say how many workers to warm, 1 to 64.", status=422)
    autoscale.warm_now(broker.connection(), queue="video", workers=int(raw))
    notify.room_changed()
    return HttpResponse(status=204)


@instructor_required
@require_POST
def burst_go(request: HttpRequest, pk: int) -> HttpResponse:
    """The "Go" after a demo: reopen the burst window so GPUs wait briefly for those still typing."""
    rnd = _round(pk)
    burst.burst_go(round=rnd)
    notify.room_changed()
    messages.success(request, "Burst window open: GPUs are shared out as filmmakers press generate.")
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


@instructor_required
@require_POST
def burst_close(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    if burst.burst_close(round=rnd):
        burst_wake()
    notify.room_changed()
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


def burst_wake() -> None:
    from .conductor import wake

    wake()  # held GPUs go to the waiting jobs at the conductor's next pass, now


@instructor_required
@require_POST
def round_pause(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    try:
        instructor.round_pause(rnd=rnd)
    except PanelRefused as exc:
        messages.error(request, str(exc))
    else:
        notify.round_changed(round_id=rnd.pk)
        messages.success(
            request, f"“{rnd.title}” is paused: no new submissions; queued and running jobs go on."
        )
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


@instructor_required
@require_http_methods(["GET", "POST"])
def round_close(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation and says how many queued jobs closing cancels; POST closes."""
    rnd = _round(pk)
    if request.method == "GET":
        context = {
            "round": rnd,
            "queued": instructor.round_close_preview(rnd),
            "running": rnd.generations.filter(status__in=Generation.IN_FLIGHT).count(),
        }
        return render(request, "generations/instructor/close_confirm.html", context)
    try:
        cancelled = instructor.round_close(rnd=rnd)
    except PanelRefused as exc:
        messages.error(request, str(exc))
        return redirect("instructor-room", pk=rnd.pk)
    notify.round_changed(round_id=rnd.pk)
    for g in cancelled:
        notify.generation_changed(owner_id=g.owner_id, generation_id=g.pk, queue=True)
    n = len(cancelled)
    messages.success(request, f"“{rnd.title}” is closed; {n} queued job{'s' if n != 1 else ''} cancelled.")
    return redirect("instructor-room", pk=rnd.pk)


# --- The live room and its actions -----------------------------------------------------------


@instructor_required
@require_GET
def room_current(request: HttpRequest) -> HttpResponse:
    rnd = selectors.round_current_for(request.user)
    if rnd is None:
        messages.info(request, "Create a round first.")
        return redirect("instructor-panel")
    return redirect("instructor-room", pk=rnd.pk)


@instructor_required
@require_GET
def room(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, ROOM, instructor.room_state(_round(pk)))


@instructor_required
@require_POST
def generation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    generation = get_object_or_404(Generation.objects.select_related("round", "template"), pk=pk)
    if services.generation_cancel(generation=generation):
        notify.generation_changed(owner_id=generation.owner_id, generation_id=generation.pk, queue=True)
    return _room_live(request, generation.round)


@instructor_required
@require_POST
def quota_top_up(request: HttpRequest, pk: int, user_id: int) -> HttpResponse:
    rnd = _round(pk)
    filmmaker = get_object_or_404(User, pk=user_id)
    raw = request.POST.get("amount", "")
    amount = int(raw) if raw.isdigit() else 0
    if not 1 <= amount <= 100:
        return HttpResponse("Top up by 1 to 100 generations.", status=422)
    services.quota_top_up(round=rnd, filmmaker=filmmaker, amount=amount, by=request.user)
    # Their pages show the quota beside the queue: re-render it.
    notify.generation_changed(owner_id=filmmaker.pk, generation_id=0, queue=True)
    return _room_live(request, rnd)


@instructor_required
@require_GET
def takes(request: HttpRequest, pk: int) -> HttpResponse:
    """Pick any take of the round for the screen (circled ones first)."""
    rnd = _round(pk)
    found = (
        Take.objects.filter(generation__round=rnd, generation__status=S.SUCCEEDED)
        .select_related("generation__owner")
        .order_by("-circled", "-created_at")
    )
    only_circled = request.GET.get("circled") == "1"
    if only_circled:
        found = found.filter(circled=True)
    context = {
        "round": rnd,
        "takes": [t for t in found if t.attempt == t.generation.attempt],
        "only_circled": only_circled,
        "spotlight": instructor.spotlight_current(),
    }
    return render(request, "generations/instructor/takes.html", context)


def _spotlight_response(request: HttpRequest) -> HttpResponse:
    context = {"spotlight": instructor.spotlight_current(), "oob": True}
    return HttpResponse(render_to_string(SPOTLIGHT, context, request=request))


@instructor_required
@require_POST
def spotlight(request: HttpRequest, pk: int) -> HttpResponse:
    instructor.spotlight_set(take=selectors.take_for_user(request.user, pk))
    notify.spotlight_changed()
    return _spotlight_response(request)


@instructor_required
@require_POST
def spotlight_next(request: HttpRequest, pk: int) -> HttpResponse:
    if instructor.spotlight_next(rnd=_round(pk)) is None:
        return HttpResponse("This round has no circled take yet.", status=422)
    notify.spotlight_changed()
    return _spotlight_response(request)


@instructor_required
@require_POST
def spotlight_clear(request: HttpRequest) -> HttpResponse:
    instructor.spotlight_set(take=None)
    notify.spotlight_changed()
    return _spotlight_response(request)


@instructor_required
@require_GET
def screen(request: HttpRequest) -> HttpResponse:
    """The projector: full screen, one large player, the prompt as its caption."""
    context = {"spotlight": instructor.spotlight_current(), "workshop": instructor.workshop_current()}
    return render(request, "generations/screen.html", context)


@instructor_required
@require_POST
def announce(request: HttpRequest) -> HttpResponse:
    try:
        instructor.announcement_create(text=request.POST.get("text", ""), by=request.user)
    except PanelRefused as exc:
        messages.error(request, str(exc))
    else:
        notify.announcements_changed()
        messages.success(request, "Announced: every filmmaker's page shows it now.")
    return redirect("instructor-panel")


@instructor_required
@require_POST
def announcement_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    if instructor.announcement_withdraw(announcement=get_object_or_404(Announcement, pk=pk)):
        notify.announcements_changed()
    return redirect("instructor-panel")


# --- Exports ---------------------------------------------------------------------------------


@instructor_required
@require_GET
def exports(request: HttpRequest) -> HttpResponse:
    context = {"people": instructor.exports_people(), "rounds": Round.objects.order_by("created_at")}
    return render(request, "generations/instructor/exports.html", context)


@instructor_required
@require_GET
def export_csv(request: HttpRequest) -> HttpResponse:
    qs = Generation.objects.all()
    raw = request.GET.get("round", "")
    if raw.isdigit():
        qs = qs.filter(round_id=int(raw))
    day = timezone.localdate().isoformat()
    return _streaming(
        request,
        instructor.generations_csv(qs),
        content_type="text/csv; charset=utf-8",
        filename=f"generations-{day}.csv",
    )


@instructor_required
@require_GET
def export_zip(request: HttpRequest, user_id: int) -> HttpResponse:
    person = get_object_or_404(User, pk=user_id)
    chunks = instructor.zip_stream(instructor.circled_takes_of(person))
    return _streaming(
        request, chunks, content_type="application/zip", filename=f"circled-{person.username}.zip"
    )


# --- For filmmakers too ----------------------------------------------------------------------


@login_required
@require_GET
def round_brief_image(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    """A reference image of a round's brief, for whoever may see the round (404 otherwise)."""
    rnd = selectors.round_for_user(request.user, pk)
    found = instructor.brief_image_open(rnd, name)
    if found is None:
        raise Http404("No such image")
    f, size, content_type = found
    response = _streaming(request, _read(f), content_type=content_type, size=size)
    response["Cache-Control"] = "private, max-age=3600"
    return response
