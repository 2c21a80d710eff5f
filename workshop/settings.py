"""Settings for the workshop, all from environment variables.

Defaults are safe and embedded: with nothing set, the app runs on a SQLite file
under .local/ with DEBUG off. Production secrets (SECRET_KEY) have no default
unless DEBUG is on.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from workshop.local_secret import local_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = Path(os.environ.get("WORKSHOP_LOCAL_DIR", BASE_DIR / ".local"))


def env(name: str, default: str = "") -> str:
    """The variable, or `default` when it is unset or empty (`DATABASE_URL=` in a .env file means
    "not set", as it does for envbool and envint, not a URL of no scheme)."""
    return os.environ.get(name) or default


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = envbool("DEBUG", False)

# No default in production: left empty, Django refuses anything that signs (sessions, upload
# URLs), and the processes that serve or dispatch refuse to start (workshop.require_secret_key).
# Commands that sign nothing (makemigrations, check) still run without it. With DEBUG on (the
# local demo) a random key is made on first start and kept under LOCAL_DIR, never a public one.
SECRET_KEY = env("SECRET_KEY") or (local_secret_key(LOCAL_DIR) if DEBUG else "")


ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# The address GPU workers use to reach this app (upload URLs are built on it).
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
UPLOAD_URL_MAX_AGE = envint("UPLOAD_URL_MAX_AGE", 6 * 3600)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_rq",
    "accounts",
    "generations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "workshop.urls"
ASGI_APPLICATION = "workshop.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL in production and tests; a SQLite file is the embedded demo default.
DB_POOL_MAX_SIZE = envint("DB_POOL_MAX_SIZE", 4)  # 0: no pool, a new connection each time
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{LOCAL_DIR / 'workshop.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Daphne, the conductor and the upload view write at once: WAL and immediate
    # transactions turn "database is locked" into short waits.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX_SIZE > 0:
    # A pool per process (Django's native psycopg pool) instead of a new PostgreSQL session for every
    # request and socket message. PostgreSQL's max_connections (100 by default) is shared by every
    # process: web processes × DB_POOL_MAX_SIZE + conductors × DB_POOL_MAX_SIZE must stay well under it.
    # A thread waits up to DB_POOL_TIMEOUT seconds for a free connection, then the request fails.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": envint("DB_POOL_MIN_SIZE", 1),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": envint("DB_POOL_TIMEOUT", 30),
    }

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
# Connections each process's Redis clients may open at once (the server allows 10,000 by default).
REDIS_MAX_CONNECTIONS = envint("REDIS_MAX_CONNECTIONS", 1000)

# The channel layer (generations.live.layer): channels-redis's Pub/Sub layer, a PUBLISH per push.
# Its connections are set explicitly: redis-py 8 caps a pool at 100 connections and fails past them
# ("Too many connections"), and its default 5 s socket timeout once raced the core layer's blocking
# read and closed idle sockets with 1011 (channels_redis#422); the subscription now polls every 0.1 s.
# Connects may not block long.
CHANNEL_LAYER_CONNECTION = {
    "socket_timeout": envint("CHANNEL_LAYER_SOCKET_TIMEOUT", 30),
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "max_connections": REDIS_MAX_CONNECTIONS,
}
# Pub/Sub channels belong to the whole Redis server, not to one of its databases: the prefix names
# the database, so two workshops (or test runs) on one server never hear each other.
_REDIS_DB = urlparse(REDIS_URL).path.strip("/") or "0"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "generations.live.layer.ChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, **CHANNEL_LAYER_CONNECTION}],
            "prefix": env("CHANNELS_PREFIX", f"workshop-asgi-{_REDIS_DB}."),
        },
    }
}

# `manage.py web` (compose's web service, `deploy/up.sh --web N`): daphne processes behind one port.
WEB_PROCESSES = envint("WEB_PROCESSES", 1)
# HTTP requests each process runs at once (workshop.asgi.gated): each holds a database connection.
WEB_REQUESTS_AT_ONCE = max(DB_POOL_MAX_SIZE, 2)

# Every RQ queue a WorkflowTemplate may name. Workers on GPU hosts read the same Redis.
RQ_QUEUE_NAMES = envlist("RQ_QUEUES", ["video", "image"])
# JSON everywhere: django-rq's dashboard deserialises with this per-queue setting (pickle when unset),
# and a job hash may have been written by a GPU host.
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 1800, "SERIALIZER": "rq.serializers.JSONSerializer"}
    for name in RQ_QUEUE_NAMES
}
EVENTS_STREAM = env("EVENTS_STREAM", "workshop:events")
# How GPU hosts reach Redis, without credentials (e.g. rediss://workshop.example.com:6380/0): the base
# of the REDIS_URL each enrolled host is given. Unset: REDIS_URL's address.
WORKER_REDIS_URL = env("WORKER_REDIS_URL")
# How long a job may run on a GPU before RQ gives up on it.
GENERATION_JOB_TIMEOUT = envint("GENERATION_JOB_TIMEOUT", 30 * 60)
# A worker silent this long is lost; its generation is dispatched again (up to MAX_ATTEMPTS).
WORKER_LOST_AFTER = envint("WORKER_LOST_AFTER", 30)
MAX_ATTEMPTS = envint("MAX_ATTEMPTS", 3)
# How long a job may sit without an RQ job, or on an idle worker, before it counts as lost.
LOST_GRACE_SECONDS = envint("LOST_GRACE_SECONDS", 10)
# After a submission wakes it, the conductor waits this long for the rest of a burst.
DISPATCH_DEBOUNCE_MS = envint("DISPATCH_DEBOUNCE_MS", 150)
# After a round opens or the instructor presses "Go", GPUs wait this long at most for the
# filmmakers who have not pressed "generate" yet (burst-aware reservation).
BURST_WINDOW_SECONDS = envint("BURST_WINDOW_SECONDS", 120)
# Jobs waiting in an RQ queue beyond what idle workers can start now.
DISPATCH_PREFETCH = envint("DISPATCH_PREFETCH", 1)
# A conductor that stops renewing its lease this long is replaced by a standby (it renews 4 times as often).
CONDUCTOR_LEADER_TTL = envint("CONDUCTOR_LEADER_TTL", 2)
# Autoscaling: every filmmaker's next take within this wait, within these bounds; a lower target
# is published only after it held this long.
TARGET_WAIT_SECONDS = envint("TARGET_WAIT_SECONDS", 600)
WORKERS_MIN = envint("WORKERS_MIN", 0)
WORKERS_MAX = envint("WORKERS_MAX", 40)
SCALE_DOWN_DELAY_SECONDS = envint("SCALE_DOWN_DELAY_SECONDS", 300)
# Signed jobs: the conductor signs each job with an Ed25519 key only the web side holds (unset: one
# derived from SECRET_KEY); workers verify with its public key (JOB_VERIFY_KEY, shown when a host is
# enrolled) and refuse a job signed more than this many seconds ago.
JOB_SIGNING_KEY = env("JOB_SIGNING_KEY")
JOB_SIGNATURE_MAX_AGE = envint("JOB_SIGNATURE_MAX_AGE", 3600)
# The media probe of each upload runs in a child process under these limits.
MEDIA_PROBE_MEMORY_MB = envint("MEDIA_PROBE_MEMORY_MB", 1024)
MEDIA_PROBE_CPU_SECONDS = envint("MEDIA_PROBE_CPU_SECONDS", 20)
MEDIA_PROBE_TIMEOUT = envint("MEDIA_PROBE_TIMEOUT", 60)
MEDIA_MAX_SIDE = envint("MEDIA_MAX_SIDE", 8192)
MEDIA_MAX_PIXELS = envint("MEDIA_MAX_PIXELS", 40_000_000)
# Request bodies daphne accepts before the app reads them: large only for the workers' uploads
# (MAX_TAKE_BYTES), this everywhere else (the proxy applies the same limits).
REQUEST_BODY_MAX_BYTES = envint("REQUEST_BODY_MAX_BYTES", 32 * 1024**2)
# Operators' API (/api/queue/status, /api/workers, /metrics): a Bearer token; unset turns it off.
OPERATOR_API_TOKEN = env("OPERATOR_API_TOKEN")
# Behind nginx: answer take downloads with this internal location instead of streaming them.
MEDIA_ACCEL_REDIRECT = env("MEDIA_ACCEL_REDIRECT")
# The price of one GPU hour where the workers report none (unset: such GPU time costs nothing); the
# spend model is generations/fleet/costs.py.
GPU_PRICE_PER_HOUR = env("GPU_PRICE_PER_HOUR", "")
# Extra seconds in an ETA when no worker of the queue is warm.
COLD_START_SECONDS = envint("COLD_START_SECONDS", 90)

AUTH_USER_MODEL = "accounts.User"
# Instructors get the admin permissions of their role (accounts/backends.py).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"  # filmmakers land on the open round, instructors on their panel
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# Set STATIC_ROOT (and WHITENOISE_USE_FINDERS=false) in production after collectstatic.
STATIC_ROOT = env("STATIC_ROOT") or None
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the source folders unless told the files were collected.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", True)

# Takes are private: they live in MEDIA_ROOT and are served only through a
# permission-checked view, never under a public URL.
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(LOCAL_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": env("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Bodies above this go to a temporary file instead of memory (uploads of takes).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
MAX_TAKE_BYTES = envint("MAX_TAKE_BYTES", 4 * 1024**3)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Production hardening; each can be turned off for a plain-HTTP demo.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", False) else None
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_ENGINE = "accounts.sessions"  # Django's database sessions, read without building an ORM query

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- The browser side: login throttling, Content Security Policy, Permissions-Policy -----------
# (README, "Security"). Each defence is on by default, in the demo too.
INSTALLED_APPS += ["axes"]
MIDDLEWARE.insert(1, "django.middleware.csp.ContentSecurityPolicyMiddleware")
MIDDLEWARE.insert(2, "workshop.security.PermissionsPolicyMiddleware")
# Last: turns a login refused for too many failures into the page that says when to try again.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
# {{ csp_nonce }} in templates (the admin's one inline style uses it).
TEMPLATES[0]["OPTIONS"]["context_processors"].append("django.template.context_processors.csp")
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username before its password is even checked.
    "accounts.backends.LoginThrottle",
    "django.contrib.auth.backends.ModelBackend",
    # Authenticates nobody: gives instructors their share of the admin from their role.
    "accounts.backends.InstructorBackend",
]

# Login throttling (django-axes) on the login page and the admin's: after LOGIN_FAILURE_LIMIT
# wrong passwords for one username, each less than LOGIN_LOCKOUT_MINUTES after the one before,
# that username is refused for LOGIN_LOCKOUT_MINUTES (from the last failure), whatever the
# password and wherever it comes from. Per username, not per address: a workshop room shares one
# address. An instructor unlocks it on the accounts page, an admin in the admin's "Access attempts".
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes warns when the address is not part of the key, for keys an attacker can rotate (user agent,
# cookies); the username alone cannot be rotated without attacking another account, and with the
# address in it five typos would lock a whole room, which shares one address.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_RESET_ON_SUCCESS = True
# Tries during a lockout do not push its end further: the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_USERNAME_CALLABLE = "accounts.backends.throttled_username"
# The address in the logs: the proxy's X-Forwarded-For only when we sit behind one.
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if envbool("BEHIND_TLS_PROXY", False) else ["REMOTE_ADDR"]
)
AXES_VERBOSE = False

# Scripts and styles only from our own static files (htmx included); no inline code, no eval
# (htmx runs with allowEval off, see base.html). 'self' in connect-src covers our own WebSocket
# (ws:/wss: on the page's host and port); the nonce is there for the admin's one inline style.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF],
    "media-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "frame-src": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
}
# Browser features no page of ours uses are off; full screen (the projector) and autoplay (muted
# previews) only for our own pages.
PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(self), camera=(), display-capture=(), fullscreen=(self), "
    "geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), "
    "publickey-credentials-get=(), usb=(), screen-wake-lock=(self), xr-spatial-tracking=()"
)
# htmx sends the CSRF token from the page (hx-headers on <body>); no script needs the cookie.
CSRF_COOKIE_HTTPONLY = True
# One line per failed login is enough (axes logs each step at INFO).
LOGGING["loggers"]["axes"] = {"level": "WARNING"}
