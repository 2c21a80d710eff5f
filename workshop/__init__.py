from __future__ import annotations


def require_secret_key() -> None:
    """Called at the start of daphne's application and of the conductor: fail at once, not on the
    first login or upload URL."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.SECRET_KEY  # noqa: B018 - Django itself refuses an empty one on access
    except ImproperlyConfigured:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off") from None
