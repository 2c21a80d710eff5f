"""Accounts for a workshop day: filmmakers created in bulk from a list of names, password
resets, deactivation, and unlocking after too many wrong passwords. Passwords are generated
here, returned once to be printed on login cards, and never stored in the clear."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import segno
from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum, Value
from django.db.models.functions import Concat, Lower
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from .models import User

MAX_NAMES = 200
# Easy to read aloud and to type from a card: no letters that look alike (l/i/o) or digits like 0/1.
_CONSONANTS = "bdfghkmnprstvz"
_VOWELS = "aeu"


class AccountsRefused(Exception):
    """A request that must change nothing; the message is for the instructor."""


@dataclass(frozen=True)
class Login:
    """What goes on a login card: shown once, right after creation or a reset."""

    user: User
    password: str


def names_parse(text: str) -> list[str]:
    """One person per line; blank lines are skipped, inner spaces collapsed."""
    names = [" ".join(line.split()) for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise AccountsRefused("Type at least one name, one per line.")
    if any("\x00" in n for n in names):  # PostgreSQL stores no NUL in text
        raise AccountsRefused("A name cannot hold a NUL character.")
    if len(names) > MAX_NAMES:
        raise AccountsRefused(f"At most {MAX_NAMES} names at once.")
    if too_long := [n for n in names if len(n) > 150]:
        raise AccountsRefused(f"This name is longer than 150 characters: {too_long[0][:40]}…")
    return names


def _folded(name: str) -> str:
    return " ".join(name.casefold().split())


def names_repeated(names: list[str]) -> list[str]:
    """Names that would become a second account for the same person: typed twice in this list, or
    the full name of an account that exists already (case and spaces aside). In list order."""
    existing = set(
        User.objects.annotate(full=Lower(Concat("first_name", Value(" "), "last_name"))).values_list(
            "full", flat=True
        )
    )
    existing = {_folded(n) for n in existing if n.strip()}
    seen: set[str] = set()
    repeated: list[str] = []
    for name in names:
        key = _folded(name)
        if (key in existing or key in seen) and name not in repeated:
            repeated.append(name)
        seen.add(key)
    return repeated


def login_qr_svg(url: str) -> SafeString:
    """A QR code of the login link, as inline SVG (dark on white, to print and to scan)."""
    code = segno.make(url, error="m")
    return mark_safe(code.svg_inline(scale=3, border=2, dark="#000", light="#fff", svgclass="login-qr"))  # noqa: S308 - segno's own markup


def password_generate() -> str:
    """Four pronounceable groups and two digits, e.g. "kasu-tebo-muri-dave-47" (about 50 bits)."""
    groups = [
        "".join(secrets.choice(_CONSONANTS) + secrets.choice(_VOWELS) for _ in range(2)) for _ in range(4)
    ]
    return "-".join(groups) + f"-{secrets.randbelow(90) + 10}"


def _ascii_word(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", plain)


def username_for(name: str, taken: set[str]) -> str:
    """The first name in plain lowercase ("José Ruiz" → "jose"); taken, then with the last name
    ("jose.ruiz"), then numbered ("jose2"). Adds the result to `taken`."""
    words = [w for w in (_ascii_word(part) for part in name.split()) if w]
    base = (words[0] if words else "filmmaker")[:20]
    candidates = [base]
    if len(words) > 1:
        candidates.append(f"{base}.{words[-1][:20]}")
    candidates += [f"{base}{n}" for n in range(2, 10_000)]
    username = next(c for c in candidates if c not in taken)
    taken.add(username)
    return username


def _hash_all(passwords: list[str]) -> list[str]:
    # The default hasher takes a large fraction of a second by design; hashlib releases the GIL,
    # so twenty names hash side by side instead of one after another.
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(make_password, passwords))


def filmmakers_create(*, names: Iterable[str]) -> list[Login]:
    """Create one active filmmaker per name, with a generated username and password."""
    names = list(names)
    passwords = [password_generate() for _ in names]
    hashes = _hash_all(passwords)
    # Never hand out "ana" beside an existing "Ana": people type usernames in any case.
    taken = {u.lower() for u in User.objects.values_list("username", flat=True)}
    logins = []
    try:
        with transaction.atomic():
            for name, password, hashed in zip(names, passwords, hashes, strict=True):
                first, _, last = name.partition(" ")
                user = User.objects.create(
                    username=username_for(name, taken),
                    first_name=first[:150],
                    last_name=last[:150],
                    role=User.Role.FILMMAKER,
                    password=hashed,
                )
                logins.append(Login(user=user, password=password))
    except IntegrityError:
        # Another batch took one of these usernames a moment ago; none of this batch was created.
        raise AccountsRefused("Accounts were being created at the same time: try again.") from None
    return logins


def filmmaker_get(pk: int) -> User | None:
    """Only filmmakers are managed from the panel: an instructor can't reset an admin's password."""
    return User.objects.filter(pk=pk, role=User.Role.FILMMAKER, is_superuser=False).first()


def password_reset(*, user: User) -> Login:
    """A new generated password; the old one, and every session opened with it, stop working."""
    password = password_generate()
    user.set_password(password)
    user.save(update_fields=["password"])
    return Login(user=user, password=password)


def account_set_active(*, user: User, active: bool) -> bool:
    """Deactivate (or reactivate) an account. A deactivated filmmaker is logged out at their next
    request and cannot log in. False when it already was so."""
    n = User.objects.filter(pk=user.pk, is_active=not active).update(is_active=active)
    user.refresh_from_db(fields=["is_active"])
    return n == 1


# --- Login lockouts (django-axes keeps the failures; settings.AXES_*) --------------------------


@dataclass(frozen=True)
class Lockout:
    username: str
    until: datetime


def lockouts() -> list[Lockout]:
    """Usernames refused now for too many wrong passwords, and when each lockout ends (the last
    failure + the cool-off), soonest first."""
    cool_off = settings.AXES_COOLOFF_TIME
    recent = (
        AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - cool_off, username__isnull=False)
        .values("username")
        .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        .filter(failures__gte=settings.AXES_FAILURE_LIMIT)
    )
    found = [Lockout(username=row["username"], until=row["last"] + cool_off) for row in recent]
    return sorted(found, key=lambda lockout: lockout.until)


def lockout_until(username: str) -> datetime | None:
    return next((x.until for x in lockouts() if x.username == username), None)


def lockout_clear(*, username: str) -> bool:
    """Unlock a username at once (its failures are forgotten); False when it was not locked."""
    locked = lockout_until(username) is not None
    axes_reset(username=username)
    return locked
