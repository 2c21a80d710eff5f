"""The local demo's SECRET_KEY: random, made on first start, kept beside the demo's database."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

FILE_NAME = "secret_key"


def local_secret_key(directory: Path) -> str:
    """The key kept in `directory`/secret_key (mode 600), made now when there is none.

    A fixed key in the source would let anyone who read it forge sessions and upload URLs of a
    demo reachable from the network. The file appears whole (written aside, then linked), so
    processes starting at once all read the same key."""
    path = Path(directory) / FILE_NAME
    if path.exists() and (key := path.read_text().strip()):
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=".secret_key-")  # mode 600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            if not path.read_text().strip():  # an empty file left by hand: replace it
                os.replace(aside, path)
    finally:
        Path(aside).unlink(missing_ok=True)
    return path.read_text().strip()
