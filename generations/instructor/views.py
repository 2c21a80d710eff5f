"""The instructor's panel: the workshop, rounds and their lifecycle, the live room and its
actions, announcements, the spotlight and /screen, the exports. Every view is for instructors
only (filmmakers get 403), except the brief's images, which whoever sees the round may load.
Thin: each parses the request, calls one service (which tells the live pages) and renders."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from accounts.views import instructor_required
from generations.broker.connection import connection
from generations.files.ranges import ranged_file_response
from generations.files.streaming import stream_response, streamed
from generations.fleet import autoscale
from generations.fleet.costs import spend_for
from generations.instructor import announcements, exports, lifecycle, spotlight, workshop
from generations.instructor.briefs import brief_image_delete, brief_image_open, brief_images
from generations.instructor.forms import RoundForm, WorkshopForm
from generations.instructor.room import room_state
from generations.instructor.workshop import PanelRefused
from generations.live.toasts import toast
from generations.models import Announcement, Generation, Round
from generations.queue import services, window
from generations.queue.access import counting_takes, round_current_for, round_for_user, take_visible_to
from generations.queue.quota import quota_for
from generations.queue.selectors import circled_takes_of
from workshop.inputs import int_or_none

PANEL = "generations/instructor/panel.html"
ROOM = "generations/instructor/room.html"
SPOTLIGHT = "generations/instructor/spotlight_now.html"
S = Generation.Status


def _round(pk: int) -> Round:
    return get_object_or_404(Round, pk=pk)


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Back to the page the form came from: htmx reloads it; a plain form is redirected to its
    `next` (on this site), else to `default`."""
    if request.htmx:
        return HttpResponse(status=204, headers={"HX-Refresh": "true"})
    target = request.POST.get("next", "")
    # A path on this site, as a URL (redirect() would take "47" for a view name), and no control
    # character a header cannot carry.
    if (
        target.startswith("/")
        and target.isprintable()
        and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure())
    ):
        return HttpResponseRedirect(target)
    return redirect(default)


def _room_live(request: HttpRequest, rnd: Round) -> HttpResponse:
    """The live room as it is now: an HTMX action swaps it in place (the page's WebSocket too)."""
    return HttpResponse(render_to_string(f"{ROOM}#room-live", room_state(rnd), request=request))


# --- The panel: the workshop, rounds, announcements ------------------------------------------


def _panel_context(**extra: Any) -> dict[str, Any]:
    current = workshop.workshop_current()
    rounds = Round.objects.annotate(
        n_queued=Count("generations", filter=Q(generations__status=S.QUEUED)),
        n_running=Count("generations", filter=Q(generations__status__in=Generation.IN_FLIGHT)),
        n_done=Count("generations", filter=Q(generations__status=S.SUCCEEDED)),
    ).order_by("-created_at")
    return {
        "workshop": current,
        "workshop_form": extra.pop("workshop_form", None) or WorkshopForm(instance=current),
        "rounds": rounds,
        "announcements": announcements.announcements_active(),
        "spend": spend_for(current),
        **extra,
    }


@instructor_required
@require_GET
def panel(request: HttpRequest) -> HttpResponse:
    return render(request, PANEL, _panel_context())


@instructor_required
@require_POST
def workshop_save(request: HttpRequest) -> HttpResponse:
    form = WorkshopForm(request.POST, instance=workshop.workshop_current())
    if not form.is_valid():
        return render(request, PANEL, _panel_context(workshop_form=form), status=422)
    workshop.workshop_save(**form.cleaned_data)
    messages.success(request, "Workshop saved.")
    return redirect("instructor-panel")


def _save_round(request: HttpRequest, rnd: Round | None) -> tuple[RoundForm, Round | None]:
    """The round's form, and the round once saved (None while the form shows what is wrong)."""
    bound = (request.POST, request.FILES) if request.method == "POST" else (None, None)
    form = RoundForm(*bound, instance=rnd)
    if request.method != "POST" or not form.is_valid():
        return form, None
    saved, refused = lifecycle.round_save(rnd=rnd, **form.cleaned_data)
    for message in refused:
        messages.error(request, message)
    return form, saved


@instructor_required
@require_http_methods(["GET", "POST"])
def round_create(request: HttpRequest) -> HttpResponse:
    form, rnd = _save_round(request, None)
    if rnd is not None:
        messages.success(request, f"Round “{rnd.title}” created as a draft: open it when you're ready.")
        return redirect("instructor-room", pk=rnd.pk)
    status = 422 if request.method == "POST" else 200
    return render(request, "generations/instructor/round_form.html", {"form": form}, status=status)


@instructor_required
@require_http_methods(["GET", "POST"])
def round_edit(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    form, saved = _save_round(request, rnd)
    if saved is not None:
        messages.success(request, "Round saved: filmmakers see the new brief at once.")
        return redirect("instructor-room", pk=rnd.pk)
    context = {"form": form, "round": rnd, "images": brief_images(rnd)}
    status = 422 if request.method == "POST" else 200
    return render(request, "generations/instructor/round_form.html", context, status=status)


@instructor_required
@require_POST
def round_image_delete(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    rnd = _round(pk)
    brief_image_delete(rnd=rnd, name=name)
    return redirect("instructor-round-edit", pk=rnd.pk)


@instructor_required
@require_POST
def round_open(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    try:
        lifecycle.round_open(rnd=rnd)
    except PanelRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"“{rnd.title}” is open: filmmakers can submit.")
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


@instructor_required
@require_POST
def round_pause(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    try:
        lifecycle.round_pause(rnd=rnd)
    except PanelRefused as exc:
        messages.error(request, str(exc))
    else:
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
        queued, running = lifecycle.round_close_preview(rnd)
        context = {"round": rnd, "queued": queued, "running": running}
        return render(request, "generations/instructor/close_confirm.html", context)
    try:
        cancelled = lifecycle.round_close(rnd=rnd)
    except PanelRefused as exc:
        messages.error(request, str(exc))
        return redirect("instructor-room", pk=rnd.pk)
    n = len(cancelled)
    messages.success(request, f"“{rnd.title}” is closed; {n} queued job{'s' if n != 1 else ''} cancelled.")
    return redirect("instructor-room", pk=rnd.pk)


@instructor_required
@require_POST
def warm(request: HttpRequest) -> HttpResponse:
    """Warm N workers now: a floor for the autoscaler for 15 minutes, before a demo."""
    workers = int_or_none(request.POST.get("workers", ""))
    if workers is None or not 1 <= workers <= 64:
        return HttpResponse("Say how many workers to warm, 1 to 64.", status=422)
    autoscale.warm_now(connection(), queue="video", workers=workers)
    said = (
        f"Warming {workers} GPU{'s' if workers != 1 else ''}: "
        f"the autoscaler keeps at least {workers} for 15 minutes."
    )
    return toast(HttpResponse(status=204), said)


@instructor_required
@require_POST
def burst_go(request: HttpRequest, pk: int) -> HttpResponse:
    """The "Go" after a demo: reopen the burst window so GPUs wait briefly for those still typing."""
    rnd = _round(pk)
    window.window_go(round=rnd)
    messages.success(request, "Burst window open: GPUs are shared out as filmmakers press generate.")
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


@instructor_required
@require_POST
def burst_close(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = _round(pk)
    window.window_close(round=rnd)
    return _back(request, reverse("instructor-room", args=[rnd.pk]))


@instructor_required
@require_POST
def announce(request: HttpRequest) -> HttpResponse:
    try:
        announcements.announcement_create(text=request.POST.get("text", ""), by=request.user)
    except PanelRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Announced: every filmmaker's page shows it now.")
    return redirect("instructor-panel")


@instructor_required
@require_POST
def announcement_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    announcements.announcement_withdraw(announcement=get_object_or_404(Announcement, pk=pk))
    return redirect("instructor-panel")


# --- The live room and its actions -----------------------------------------------------------


@instructor_required
@require_GET
def room_current(request: HttpRequest) -> HttpResponse:
    rnd = round_current_for(request.user)
    if rnd is None:
        messages.info(request, "Create a round first.")
        return redirect("instructor-panel")
    return redirect("instructor-room", pk=rnd.pk)


@instructor_required
@require_GET
def room(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, ROOM, room_state(_round(pk)))


@instructor_required
@require_POST
def generation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    generation = get_object_or_404(Generation.objects.select_related("round", "template"), pk=pk)
    services.generation_cancel(generation=generation)
    return toast(_room_live(request, generation.round), f"#{generation.pk} of {generation.owner} cancelled.")


@instructor_required
@require_POST
def quota_top_up(request: HttpRequest, pk: int, user_id: int) -> HttpResponse:
    rnd = _round(pk)
    filmmaker = get_object_or_404(User, pk=user_id)
    amount = int_or_none(request.POST.get("amount", "")) or 0
    if not 1 <= amount <= 100:
        return HttpResponse("Top up by 1 to 100 generations.", status=422)
    services.quota_top_up(round=rnd, filmmaker=filmmaker, amount=amount, by=request.user)
    left = quota_for(filmmaker, rnd).left
    return toast(_room_live(request, rnd), f"+{amount} for {filmmaker.username}: {left} left in this round.")


@instructor_required
@require_GET
def takes(request: HttpRequest, pk: int) -> HttpResponse:
    """Pick any take of the round for the screen (circled ones first)."""
    rnd = _round(pk)
    found = (
        counting_takes()
        .filter(generation__round=rnd)
        .select_related("generation__owner")
        .order_by("-circled", "-created_at")
    )
    only_circled = request.GET.get("circled") == "1"
    if only_circled:
        found = found.filter(circled=True)
    context = {
        "round": rnd,
        "takes": list(found),
        "only_circled": only_circled,
        "spotlight": spotlight.spotlight_current(),
    }
    return render(request, "generations/instructor/takes.html", context)


def _spotlight_response(request: HttpRequest) -> HttpResponse:
    current = spotlight.spotlight_current()
    context = {"spotlight": current, "oob": True}
    response = HttpResponse(render_to_string(SPOTLIGHT, context, request=request))
    said = (
        f"On the screen: #{current.generation_id} by {current.generation.owner}."
        if current
        else "The screen is clear."
    )
    return toast(response, said, kind="info")


@instructor_required
@require_POST
def spotlight_take(request: HttpRequest, pk: int) -> HttpResponse:
    spotlight.spotlight_set(take=take_visible_to(request.user, pk))
    return _spotlight_response(request)


@instructor_required
@require_POST
def spotlight_next(request: HttpRequest, pk: int) -> HttpResponse:
    if spotlight.spotlight_next(rnd=_round(pk)) is None:
        return HttpResponse("This round has no circled take yet.", status=422)
    return _spotlight_response(request)


@instructor_required
@require_POST
def spotlight_clear(request: HttpRequest) -> HttpResponse:
    spotlight.spotlight_set(take=None)
    return _spotlight_response(request)


@instructor_required
@require_GET
def screen(request: HttpRequest) -> HttpResponse:
    """The projector: full screen, one large player, the prompt as its caption."""
    context = {"spotlight": spotlight.spotlight_current(), "workshop": workshop.workshop_current()}
    return render(request, "generations/screen.html", context)


# --- Exports ---------------------------------------------------------------------------------


@instructor_required
@require_GET
def exports_page(request: HttpRequest) -> HttpResponse:
    context = {"people": exports.exports_people(), "rounds": Round.objects.order_by("created_at")}
    return render(request, "generations/instructor/exports.html", context)


@instructor_required
@require_GET
def export_csv(request: HttpRequest) -> HttpResponseBase:
    qs = Generation.objects.all()
    round_id = int_or_none(request.GET.get("round", ""))
    if round_id is not None:
        qs = qs.filter(round_id=round_id)
    day = timezone.localdate().isoformat()
    response = stream_response(
        request,
        exports.generations_csv(qs),
        content_type="text/csv; charset=utf-8",
        filename=f"generations-{day}.csv",
    )
    response["Cache-Control"] = "private, no-store"  # everyone's prompts
    return response


@instructor_required
@require_GET
def export_zip(request: HttpRequest, user_id: int) -> HttpResponseBase:
    person = get_object_or_404(User, pk=user_id)
    chunks = exports.circled_zip(circled_takes_of(person))
    return stream_response(
        request, chunks, content_type="application/zip", filename=f"circled-{person.username}.zip"
    )


# --- For filmmakers too ----------------------------------------------------------------------


@login_required
@require_GET
def round_brief_image(request: HttpRequest, pk: int, name: str) -> HttpResponseBase:
    """A reference image of a round's brief, for whoever may see the round (404 otherwise)."""
    rnd = round_for_user(request.user, pk)
    found = brief_image_open(rnd, name)
    if found is None:
        raise Http404("No such image")
    f, size, content_type = found
    return streamed(
        request, ranged_file_response(request, f, size=size, content_type=content_type, filename=name)
    )
