"""Outputs that workers upload: the signed per-attempt URL, and storing each file as a Take with
what the media probe finds (size, length, poster, thumbnail)."""

from __future__ import annotations

import mimetypes
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse

from generations.dispatch import media
from generations.models import Generation, Take
from generations.queue.services import takes_discard

UPLOAD_SALT = "generations.upload"


class UploadRefused(Exception):
    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def upload_url(*, generation: Generation) -> str:
    """A signed URL that accepts this generation's outputs for this attempt only."""
    token = signing.dumps({"g": generation.pk, "a": generation.attempt}, salt=UPLOAD_SALT, compress=True)
    return settings.PUBLIC_BASE_URL + reverse("take-upload", args=[token, "x"])[:-1]


def upload_token_verify(token: str) -> tuple[int, int]:
    try:
        data = signing.loads(token, salt=UPLOAD_SALT, max_age=settings.UPLOAD_URL_MAX_AGE)
        return int(data["g"]), int(data["a"])
    except signing.SignatureExpired:
        raise UploadRefused("This upload URL has expired.") from None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise UploadRefused("This upload URL is not valid.") from None


def _kind_for(content_type: str) -> str:
    top = content_type.split("/", 1)[0]
    return top if top in (Take.Kind.VIDEO, Take.Kind.IMAGE, Take.Kind.AUDIO) else Take.Kind.OTHER


def _in_flight(gid: int, attempt: int, *, lock: bool = False) -> Generation | None:
    qs = Generation.objects.filter(pk=gid, attempt=attempt, status__in=Generation.IN_FLIGHT)
    return (qs.select_for_update() if lock else qs).first()


def take_store(*, token: str, filename: str, chunks: Iterable[bytes], content_type: str = "") -> Take:
    """Store one output file streamed by a worker and record it as a Take.

    Re-uploading the same file for the same attempt replaces it (a retried PUT)."""
    gid, attempt = upload_token_verify(token)
    filename = Path(filename).name
    if not filename or filename.startswith("."):
        raise UploadRefused("A file name is required.", status=400)
    gone = UploadRefused("This generation no longer accepts uploads for this attempt.", status=409)
    if _in_flight(gid, attempt) is None:
        raise gone  # cancelled, already finished, or superseded by a newer attempt
    content_type = (
        content_type.split(";")[0].strip() or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    )
    with tempfile.NamedTemporaryFile(suffix=Path(filename).suffix) as tmp:
        size = _receive(chunks, tmp)
        info = media.probe(Path(tmp.name), content_type)
        # The gallery grid's small JPEG, made once here like the poster (a few ms).
        thumb = media.thumbnail(Path(tmp.name), content_type)
        tmp.seek(0)
        with transaction.atomic():
            # Checked again under the row lock that cancel takes: a take never outlives a cancel.
            generation = _in_flight(gid, attempt, lock=True)
            if generation is None:
                raise gone
            # A retried PUT of the same file replaces it.
            takes_discard(Take.objects.filter(generation=generation, attempt=attempt, filename=filename))
            take = Take(
                generation=generation,
                attempt=attempt,
                filename=filename,
                kind=_kind_for(content_type),
                content_type=content_type,
                size=size,
                width=info.width,
                height=info.height,
                duration=info.duration,
                frame_count=info.frame_count,
            )
            take.file.save(filename, File(tmp), save=False)
            stem = Path(filename).stem
            if info.poster_png:
                take.poster.save(f"{stem}-poster.png", ContentFile(info.poster_png), save=False)
            if thumb:
                take.thumbnail.save(f"{stem}-thumb.jpg", ContentFile(thumb), save=False)
            take.save()
    return take


def _receive(chunks: Iterable[bytes], tmp: tempfile._TemporaryFileWrapper[bytes]) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > settings.MAX_TAKE_BYTES:
            raise UploadRefused("The file is larger than this workshop accepts.", status=413)
        tmp.write(chunk)
    tmp.flush()
    return size
