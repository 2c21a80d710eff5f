"""The filmmaker's round page (the studio): the brief, the composer, my queue and my takes as tiles,
the take viewer; submit, cancel and retry; a job card; a running job's preview frame; a take's file
and poster."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from generations.authoring.params import ParamsForm, composer, parse_spec
from generations.broker.previews import previews
from generations.dispatch.schema import PREVIEW_SIDE_LIMIT
from generations.files.ranges import media_headers, stored_file_response
from generations.files.sniff import preview_image
from generations.files.streaming import streamed
from generations.gallery.remix import remix_initial
from generations.instructor.announcements import announcements_active
from generations.instructor.briefs import brief_images
from generations.live import groups
from generations.live.toasts import toast
from generations.models import Generation, Round, WorkflowTemplate
from generations.queue import services
from generations.queue.access import (
    generation_for_user,
    round_current_for,
    round_for_user,
    take_owned_by,
    take_visible_to,
    template_offered,
)
from generations.queue.cards import queue_context, with_estimates, with_previews
from generations.queue.selectors import finished_of
from gpu_worker import protocol
from workshop.inputs import int_or_none

PAGE = "generations/round.html"


def _form_for(template: WorkflowTemplate | None, data: Any = None, initial: Any = None) -> ParamsForm:
    spec = parse_spec(template.param_spec) if template else []
    return ParamsForm(spec, data=data, initial=initial)


def _page_context(request: HttpRequest, rnd: Round, **extra: Any) -> dict[str, Any]:
    templates = list(rnd.templates.all())
    chosen = extra.pop("template", None)
    if chosen is None:
        slug = request.GET.get("template")
        chosen = next((t for t in templates if t.slug == slug), templates[0] if templates else None)
    # A "Use these settings" link from the gallery fills the form (gallery.remix_url).
    form = extra.pop("form", None) or _form_for(chosen, initial=remix_initial(request.GET, chosen))
    return {
        "round": rnd,
        "templates": templates,
        "template_obj": chosen,
        "form": form,
        "composer": composer(form),
        "submit_token": uuid.uuid4(),
        "finished": finished_of(request.user, rnd),
        # The socket sends both again on connect; a page shows them before it connects too.
        "announcements": announcements_active(),
        "brief_images": brief_images(rnd),
        **queue_context(request.user, rnd),
        **extra,
    }


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_instructor and not request.htmx:
        return redirect("instructor-panel")  # instructors run the day from their panel
    rnd = round_current_for(request.user)
    if rnd is None:
        return render(request, "generations/no_round.html")
    if request.htmx:  # the waiting page's check: a full navigation to the round
        return HttpResponse(headers={"HX-Redirect": reverse("round", args=[rnd.pk])})
    return redirect("round", pk=rnd.pk)


@login_required
@require_GET
def round_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rnd = round_for_user(request.user, pk)
    return render(request, PAGE, _page_context(request, rnd))


@login_required
@require_POST
def generation_submit(request: HttpRequest, pk: int) -> HttpResponse:
    """HTMX POST: 200 with the queue and what changes in the form, or 422 with the form and its errors."""
    template_id = int_or_none(request.POST.get("template", ""))
    # Only the one template submitted (a ComfyUI workflow is tens of kB of JSON), if a round this user
    # may see offers it. The round itself is read by the service, under its lock.
    template = template_offered(request.user, pk, template_id) if template_id is not None else None
    form = _form_for(template, data=request.POST)
    error = "" if template is not None else "Unknown template: pick one of this round's templates."
    if template is not None and form.is_valid():
        try:
            generation = services.generation_create(
                owner=request.user,
                round_id=pk,
                template=template,
                params=form.cleaned_data,
                submit_token=_token(request.POST.get("submit_token")),
                priority=request.POST.get("priority") == "on",
                tell_owner=False,  # below, with the queue this answer renders
            )
        except services.SubmissionRefused as exc:
            error = str(exc)
        else:
            return _submitted(request, generation, template, form)
    rnd = round_for_user(request.user, pk)  # 404 for a round this user may not see
    # An unknown template: the round's first one, with the message above it.
    shown = template or next(iter(rnd.templates.all()), None)
    context = _form_context(rnd, shown, form, form_error=error, seed_locked="seed_lock" in request.POST)
    return render(request, f"{PAGE}#submit-form", context, status=422)


def _submitted(
    request: HttpRequest, generation: Generation, template: WorkflowTemplate, sent: ParamsForm
) -> HttpResponse:
    """The answer to an accepted submission: the queue with its card, and the form for the next take."""
    rnd = generation.round  # as the service read it, under the round's lock
    queue_html = _queue_for_every_page(request.user, rnd, generation.pk)
    locked = request.POST.get("seed_lock") == "on"
    whole_form = bool(request.POST.get("shows_refusal"))  # the page's form shows the last refusal
    # The seed field only when a typed seed was used up (not locked): blank or locked, it shows the
    # same for the next take, and its widget is most of the render.
    seeds = _seed_names(sent)
    renew_seed = not locked and any(request.POST.get(name, "").strip() for name in seeds)
    context: dict[str, Any] = {"round": rnd, "submit_token": uuid.uuid4()}
    if whole_form or renew_seed:
        # Keep the settings for the next try; a blank seed gives a new random one, unless locked.
        again = {k: v for k, v in generation.params.items() if locked or k not in seeds}
        context = _form_context(rnd, template, _form_for(template, initial=again), seed_locked=locked)
    if whole_form:
        response = HttpResponse(render_to_string(f"{PAGE}#submit-form", context, request) + queue_html)
    else:
        # Only what a submission changes (a new token, the seed, the priority tick), out of band: the
        # whole form is the answer's costliest render, and every filmmaker's click in a burst waits
        # for the answers before it.
        extra = {"oob": True, "renew_seed": renew_seed}
        renewed = render_to_string(f"{PAGE}#submit-renewed", {**context, **extra}, request)
        response = HttpResponse(renewed + queue_html, headers={"HX-Reswap": "none"})
    return toast(response, f"#{generation.pk} is in the queue.")


def _queue_for_every_page(user: User, rnd: Round, generation_id: int) -> str:
    """The queue after a submission, for this answer and, as it is, for the owner's other round pages
    (rendered as their sockets render it: without the request). Rendered once: in a burst it is
    every filmmaker's one push, and their pages' own renders would come after everyone's answers."""
    read_at = time.time()  # before the reads: a page that read later knows better
    try:
        html = render_to_string(f"{PAGE}#my-queue", {**queue_context(user, rnd), "oob": True})
    except Exception:
        groups.generation_changed(owner_id=user.pk, generation_id=generation_id, queue=True)  # they render
        raise
    groups.queue_rendered(
        owner_id=user.pk, round_id=rnd.pk, generation_id=generation_id, html=html, read_at=read_at
    )
    return html


def _form_context(
    rnd: Round, template: WorkflowTemplate | None, form: ParamsForm, **extra: Any
) -> dict[str, Any]:
    """Only what the submit form (and the queue beside it) shows: an answer to every filmmaker's
    click in a burst reads nothing else."""
    return {
        "round": rnd,
        "template_obj": template,
        "form": form,
        "composer": composer(form),
        "submit_token": uuid.uuid4(),
        **extra,
    }


def _seed_names(form: ParamsForm) -> set[str]:
    return {p.name for p in form.spec if p.type == "seed"}


def _token(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def _tiles_response(request: HttpRequest, generation_id: int, *, said: str, error: str = "") -> HttpResponse:
    """After a cancel or a retry the card changes grid: the queue and the takes as they are now,
    out of band (the buttons swap nothing themselves), and what happened as a toast."""
    generation = generation_for_user(request.user, generation_id)
    html = ""
    if generation.owner_id == request.user.pk:
        rnd = generation.round
        queue = {**queue_context(request.user, rnd), "oob": True}
        html = render_to_string(f"{PAGE}#my-queue", queue, request=request)
        takes = {"finished": finished_of(request.user, rnd), "round": rnd, "oob": True}
        html += render_to_string(f"{PAGE}#my-takes", takes, request=request)
    response = HttpResponse(html, status=422 if error else 200)
    return toast(response, error or said, kind="error" if error else "ok")


@login_required
@require_POST
def generation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    services.generation_cancel(generation=generation_for_user(request.user, pk))
    return _tiles_response(request, pk, said=f"#{pk} cancelled.")


@login_required
@require_POST
def generation_retry(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.generation_retry(generation=generation_for_user(request.user, pk))
    except services.SubmissionRefused as exc:
        return _tiles_response(request, pk, said="", error=str(exc))
    return _tiles_response(request, pk, said=f"#{pk} is in the queue again, with the same settings.")


@login_required
@require_GET
def generation_card(request: HttpRequest, pk: int) -> HttpResponse:
    generation = with_previews(with_estimates([generation_for_user(request.user, pk)]))[0]
    return HttpResponse(render_to_string(f"{PAGE}#job-card", {"g": generation}, request=request))


@login_required
@require_GET
def take_viewer(request: HttpRequest, pk: int) -> HttpResponse:
    """The viewer's panel for one of my takes: the player, its settings, circle and note."""
    take = take_owned_by(request.user, pk)
    if take.generation.status != Generation.Status.SUCCEEDED:
        return HttpResponse(status=404)
    return render(request, f"{PAGE}#viewer-body", {"t": take, "me": request.user})


@login_required
@require_GET
def generation_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """The latest preview frame of a running generation (kept in Redis while it renders)."""
    generation = generation_for_user(request.user, pk)
    found = previews([(generation.pk, generation.attempt)]).get(generation.pk)
    image = base64.b64decode(str(found["image"])) if found else b""
    # Served with the type its bytes have (checked again: an entry may predate the conductor's check).
    kind = preview_image(image, max_bytes=protocol.PREVIEW_MAX_BYTES, max_side=PREVIEW_SIDE_LIMIT)
    if kind is None:
        return HttpResponse(status=404)
    response = media_headers(HttpResponse(image, content_type=kind[0].content_type))
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def take_file(request: HttpRequest, pk: int) -> HttpResponseBase:
    take = take_visible_to(request.user, pk)
    response = stored_file_response(
        request,
        take.file,
        content_type=take.content_type,
        filename=take.filename,
        attachment=request.GET.get("download") == "1",
    )
    return streamed(request, response)


@login_required
@require_GET
def take_poster(request: HttpRequest, pk: int) -> HttpResponseBase:
    take = take_visible_to(request.user, pk)
    if not take.poster:
        return HttpResponse(status=404)
    return streamed(
        request, stored_file_response(request, take.poster, content_type="image/png", filename="poster.png")
    )
