"""The brief's reference images: stored with Django's storage under briefs/r<round id>/ (the folder
is the list; no model), shown under the brief on every filmmaker's page."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import IO

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.utils.text import get_valid_filename

from generations.files import sniff
from generations.instructor.workshop import PanelRefused
from generations.live import groups
from generations.models import Round

BRIEF_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
MAX_BRIEF_IMAGE_BYTES = 20 * 1024 * 1024


def _brief_dir(rnd: Round) -> str:
    return f"briefs/r{rnd.pk}"


def brief_images(rnd: Round) -> list[str]:
    try:
        _dirs, files = default_storage.listdir(_brief_dir(rnd))
    except FileNotFoundError:
        return []
    return sorted(f for f in files if PurePosixPath(f).suffix.lower() in BRIEF_IMAGE_TYPES)


def _is_image(head: bytes, suffix: str) -> bool:
    """The file starts like the image its name claims to be (never serve HTML as an image)."""
    kind = sniff.kind_of(head)
    return kind is not None and kind.content_type == BRIEF_IMAGE_TYPES[suffix]


def brief_image_add(*, rnd: Round, upload: UploadedFile) -> str:
    """Store one reference image; returns its stored name (a taken name gets a suffix)."""
    name = get_valid_filename(PurePosixPath(upload.name or "image").name)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in BRIEF_IMAGE_TYPES:
        raise PanelRefused(f"{upload.name}: use a PNG, JPEG, WebP or GIF image.")
    if (upload.size or 0) > MAX_BRIEF_IMAGE_BYTES:
        raise PanelRefused(f"{upload.name} is larger than {MAX_BRIEF_IMAGE_BYTES // 1024**2} MB.")
    head = upload.read(16)
    upload.seek(0)
    if not _is_image(head, suffix):
        raise PanelRefused(f"{upload.name} is not a {suffix[1:].upper()} image.")
    stored = default_storage.save(f"{_brief_dir(rnd)}/{name}", upload)
    return PurePosixPath(stored).name


def brief_image_open(rnd: Round, name: str) -> tuple[IO[bytes], int, str] | None:
    """(file, size, content type) of one of the round's images, or None."""
    if name not in brief_images(rnd):
        return None
    path = f"{_brief_dir(rnd)}/{name}"
    return (
        default_storage.open(path, "rb"),
        default_storage.size(path),
        BRIEF_IMAGE_TYPES[PurePosixPath(name).suffix.lower()],
    )


def brief_image_delete(*, rnd: Round, name: str) -> bool:
    if name not in brief_images(rnd):
        return False
    default_storage.delete(f"{_brief_dir(rnd)}/{name}")
    groups.round_changed(round_id=rnd.pk)
    return True
