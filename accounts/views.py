"""The instructor's accounts page: filmmakers in bulk, login cards, resets, deactivation, unlocking;
and the page a locked-out login gets."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from axes.helpers import get_client_username
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from . import services
from .models import User

View = Callable[..., HttpResponse]
# Batches already created in this session: a reloaded (re-POSTed) cards page creates nothing twice.
SEEN_BATCHES = "accounts_batches"


def instructor_required(view: View) -> View:
    """Anonymous visitors go to the login page; a logged-in filmmaker gets 403."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_instructor:
            raise PermissionDenied("Instructors only.")
        return view(request, *args, **kwargs)

    return wrapper


def _filmmaker(pk: int) -> User:
    user = services.filmmaker_get(pk)
    if user is None:
        raise Http404("No such filmmaker")
    return user


@instructor_required
@require_GET
def account_list(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/list.html", {**_list_context(), "batch": uuid.uuid4()})


def _list_context() -> dict[str, Any]:
    """The accounts page: the filmmakers, and who is locked out of logging in (with until when)."""
    people = (
        User.objects.filter(role=User.Role.FILMMAKER, is_superuser=False)
        .annotate(n_generations=Count("generations"))
        .order_by("-is_active", "username")
    )
    locked = services.lockouts()
    return {"people": people, "lockouts": locked, "locked_until": {x.username: x.until for x in locked}}


@instructor_required
@require_POST
def accounts_create(request: HttpRequest) -> HttpResponse:
    """Creates the accounts and answers with their login cards: the passwords are shown this once."""
    batch = request.POST.get("batch", "")
    seen = request.session.get(SEEN_BATCHES, [])
    if batch in seen:
        messages.warning(
            request,
            "These accounts were created already and their passwords shown once. "
            "Reset a password to print a new card.",
        )
        return redirect("accounts-list")
    try:
        names = services.names_parse(request.POST.get("names", ""))
    except services.AccountsRefused as exc:
        messages.error(request, str(exc))
        return redirect("accounts-list")
    repeated = services.names_repeated(names)
    if repeated and request.POST.get("repeats") != "create":
        # A name typed twice, or someone who has an account already: ask before a second account.
        context = {
            **_list_context(),
            "batch": batch,
            "names": request.POST.get("names", ""),
            "repeated": repeated,
        }
        return render(request, "accounts/list.html", context, status=409)
    try:
        logins = services.filmmakers_create(names=names)
    except services.AccountsRefused as exc:
        messages.error(request, str(exc))
        return redirect("accounts-list")
    request.session[SEEN_BATCHES] = [*seen[-20:], batch]
    return _cards(request, logins, title=f"{len(logins)} new filmmaker accounts")


@instructor_required
@require_POST
def account_reset(request: HttpRequest, pk: int) -> HttpResponse:
    login = services.password_reset(user=_filmmaker(pk))
    return _cards(request, [login], title=f"New password for {login.user.username}")


@instructor_required
@require_POST
def account_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    user = _filmmaker(pk)
    if services.account_set_active(user=user, active=False):
        messages.success(request, f"{user.username} is deactivated: logged out and unable to log in.")
    return redirect("accounts-list")


@instructor_required
@require_POST
def account_activate(request: HttpRequest, pk: int) -> HttpResponse:
    user = _filmmaker(pk)
    if services.account_set_active(user=user, active=True):
        messages.success(request, f"{user.username} can log in again.")
    return redirect("accounts-list")


@instructor_required
@require_POST
def account_unlock(request: HttpRequest) -> HttpResponse:
    """Lift a login lockout (any username: unlocking lets no one in without the password)."""
    username = request.POST.get("username", "")
    if not username or len(username) > 150 or "\x00" in username:
        messages.error(request, "No such username.")
    elif services.lockout_clear(username=username):
        messages.success(request, f"{username} can log in again now.")
    else:
        messages.info(request, f"{username} was not locked out.")
    return redirect("accounts-list")


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """What a login refused by the throttle answers (settings.AXES_LOCKOUT_CALLABLE), on our login
    page and the admin's: 429, with when to try again."""
    username = get_client_username(request, credentials) or ""
    until = services.lockout_until(username) or timezone.now() + settings.AXES_COOLOFF_TIME
    seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
    context = {"username": username, "until": until, "minutes": math.ceil(seconds / 60)}
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _cards(request: HttpRequest, logins: list[services.Login], *, title: str) -> HttpResponse:
    login_url = request.build_absolute_uri(reverse("login"))
    names = [login.user.get_full_name() for login in logins]
    cards = [
        {
            "login": login,
            # The QR code opens the login page with the username filled in.
            "qr": services.login_qr_svg(f"{login_url}?{urlencode({'username': login.user.username})}"),
            # Two cards may carry one name (someone typed twice on purpose): the username tells them apart.
            "repeated": names.count(login.user.get_full_name()) > 1,
        }
        for login in logins
    ]
    shown_url = login_url.split("://", 1)[-1]
    context = {"cards": cards, "title": title, "login_url": login_url, "shown_url": shown_url}
    response = render(request, "accounts/cards.html", context)
    # Passwords in the clear: no cache may keep this page.
    response["Cache-Control"] = "no-store"
    return response
