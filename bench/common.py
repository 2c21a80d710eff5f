"""What the live benchmarks share: their own database and Redis, a clean slate, and the real
processes of tests/live.py."""

from __future__ import annotations

import atexit
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

# Each run gets a database of its own (dropped at exit) and claims a Redis database like a test run
# does (tests/redis_db.py), so benchmarks and test runs on one machine never flush each other.
SERVER = "postgres://postgres@127.0.0.1:5432"
DEFAULTS = {
    "SECRET_KEY": "bench-only-not-secret",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "LOG_LEVEL": "WARNING",
}


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str) -> None:
    import psycopg
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def own_services() -> None:
    """A PostgreSQL database (dropped at exit) and a Redis database of this run's own, unless set."""
    if not os.environ.get("DATABASE_URL"):
        url = f"{SERVER}/workshop_bench_{os.getpid()}"
        os.environ["DATABASE_URL"] = url
        atexit.register(drop_database, url)
    if not os.environ.get("REDIS_URL"):
        import redis

        from tests import redis_db

        n = redis_db.claim(redis.Redis.from_url(f"{redis_db.BASE}/0"))
        os.environ["REDIS_URL"] = f"{redis_db.BASE}/{n}"
        atexit.register(redis_db.release)


def setup() -> Any:
    """Environment defaults, Django set up on a migrated and emptied database; returns Redis (emptied)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    own_services()
    os.environ["DJANGO_SETTINGS_MODULE"] = "workshop.settings"
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    conn = redis.Redis.from_url(settings.REDIS_URL)
    conn.flushdb()
    return conn


def live_stack(prefix: str, redis_server: Any = None, *, acl: bool = True) -> Any:
    """A tests.live.LiveStack on the bench database, logs and media in a fresh temporary folder, on a
    private Redis with ACLs as in production (``redis_server``, else one started here) unless ``acl``
    is off (then on the claimed Redis database, for bench/pipeline.py's baseline)."""
    from django.conf import settings

    from tests.live import LiveStack
    from tests.redis_server import WEB_USER, RedisServer

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    (tmp / "logs").mkdir()
    if acl and redis_server is None:
        redis_server = RedisServer(tmp / "redis").start()
        atexit.register(redis_server.stop)
    if redis_server is not None:
        settings.REDIS_URL = redis_server.url(WEB_USER)
    stack = LiveStack(
        database=os.environ["DATABASE_URL"],
        redis_url=settings.REDIS_URL,
        media_root=tmp / "media",
        logs=tmp / "logs",
        redis_server=redis_server,
    )
    settings.PUBLIC_BASE_URL = stack.url
    return stack


# A valid submission of the synthetic template (its smallest video), as the round page's form sends it.
FORM = {"prompt": "a lighthouse", "seed": "7", "frames": "9", "width": "64", "height": "64", "fps": "12"}


def submit_data(template_id: int) -> dict[str, str]:
    """The submit form's fields for one take: a token of its own, so no two are the same take."""
    return {**FORM, "template": str(template_id), "submit_token": str(uuid.uuid4())}


def round_with_synthetic(title: str, *, quota: int = 15) -> tuple[Any, Any]:
    """(an open round offering the synthetic template, the template)."""
    from generations.authoring.demo import synthetic_template
    from generations.models import Round

    template = synthetic_template()
    rnd = Round.objects.create(title=title, status=Round.Status.OPEN, quota=quota)
    rnd.templates.add(template)
    return rnd, template


def session_cookies(users: list[Any]) -> list[str]:
    """A logged-in session for each user, written straight to the database (a login per user would
    cost seconds of password hashing), as `sessionid=...` cookies in the same order."""
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    backend = settings.AUTHENTICATION_BACKENDS[0]
    expires = timezone.now() + timedelta(days=1)
    store = SessionStore()

    def session(user: Any) -> Session:
        data = {"_auth_user_id": str(user.pk), "_auth_user_backend": backend,
                "_auth_user_hash": user.get_session_auth_hash()}  # fmt: skip
        return Session(session_key=uuid.uuid4().hex, session_data=store.encode(data), expire_date=expires)

    sessions = Session.objects.bulk_create(session(u) for u in users)
    return [f"sessionid={s.session_key}" for s in sessions]
