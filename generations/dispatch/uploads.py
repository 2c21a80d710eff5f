"""Outputs that workers upload: the signed per-attempt URL, the checks an upload passes (a valid
token, the credential of the host that holds the attempt), and storing each file as a Take with
what the media probe finds (its type, size, length, poster, thumbnail)."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse

from generations.dispatch import media
from generations.fleet.hosts import security_event_record
from generations.models import Generation, GpuHost, SecurityEvent, Take
from generations.queue.services import takes_discard

UPLOAD_SALT = "generations.upload"
UPLOAD_HOLDER_WAIT_S = 5.0


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


def _in_flight(gid: int, attempt: int, *, lock: bool = False) -> Generation | None:
    qs = Generation.objects.filter(pk=gid, attempt=attempt, status__in=Generation.IN_FLIGHT)
    return (qs.select_for_update() if lock else qs).first()


FILENAME_STEM_MAX = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def filename_clean(filename: str, extension: str) -> str:
    """A safe file name for storage and for Content-Disposition: ASCII letters, digits, ``._-``,
    at most FILENAME_STEM_MAX characters before the extension the probe chose."""
    stem = Path(filename.replace("\\", "/")).name
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).strip("._-")[:FILENAME_STEM_MAX] or "output"
    return stem + extension


def upload_check(*, token: str, host: GpuHost | None) -> tuple[int, int]:
    """Everything an upload must satisfy before its body is worth reading: a valid token, and an
    attempt in flight that this host holds. Returns (generation id, attempt)."""
    gid, attempt = upload_token_verify(token)
    generation = _await_holder(gid, attempt) if host is not None else _in_flight(gid, attempt)
    if generation is None:
        raise UploadRefused("This generation no longer accepts uploads for this attempt.", status=409)
    if host is not None and generation.host_id != host.pk:
        security_event_record(
            kind=SecurityEvent.Kind.FOREIGN_UPLOAD,
            host=host,
            generation_id=gid,
            attempt=attempt,
            detail="upload for an attempt another host holds"
            if generation.host_id
            else "upload before start",
        )
        raise UploadRefused("This attempt is not held by this GPU host.", status=403)
    return gid, attempt


def _await_holder(gid: int, attempt: int) -> Generation | None:
    # A worker uploads right after its "started" event; the conductor may not have applied it yet.
    deadline = time.monotonic() + UPLOAD_HOLDER_WAIT_S
    while True:
        generation = _in_flight(gid, attempt)
        if generation is None or generation.host_id is not None or time.monotonic() >= deadline:
            return generation
        time.sleep(0.05)


def take_store(
    *, token: str, filename: str, chunks: Iterable[bytes], host: GpuHost | None = None, content_type: str = ""
) -> Take:
    """Store one output file streamed by a worker and record it as a Take.

    ``host`` is the credential the upload came with (the view requires one): the attempt must be
    held by it. The server decides the type by probing the file (``media``); anything but an
    allowed video or image is refused (415), and the name is cleaned and given the extension found.
    ``content_type`` (the worker's claim) is ignored. Re-uploading the same file for the same
    attempt replaces it (a retried PUT)."""
    gid, attempt = upload_check(token=token, host=host)
    gone = UploadRefused("This generation no longer accepts uploads for this attempt.", status=409)
    with tempfile.NamedTemporaryFile(prefix="upload-") as tmp:
        size = _receive(chunks, tmp)
        try:
            info = media.probe_file(Path(tmp.name))
        except media.MediaRefused as exc:
            raise UploadRefused(str(exc), status=415) from None
        filename = filename_clean(filename, info.extension)
        tmp.seek(0)
        with transaction.atomic():
            # Checked again under the row lock that cancel takes: a take never outlives a cancel.
            generation = _in_flight(gid, attempt, lock=True)
            if generation is None or (host is not None and generation.host_id != host.pk):
                raise gone
            # A retried PUT of the same file replaces it.
            takes_discard(Take.objects.filter(generation=generation, attempt=attempt, filename=filename))
            take = Take(
                generation=generation,
                attempt=attempt,
                filename=filename,
                kind=info.kind,
                content_type=info.content_type,
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
            if info.thumbnail_jpeg:
                take.thumbnail.save(f"{stem}-thumb.jpg", ContentFile(info.thumbnail_jpeg), save=False)
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
