"""ZIP archives of takes, made while they stream: memory holds about one chunk however large the
files. Videos and images are stored as they are (already compressed); `takes.csv` describes each
file. A file missing from storage does not break the archive: the manifest says so."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable, Iterator

from django.utils import timezone

from generations.files.csvfile import csv_lines
from generations.models import Take

CHUNK = 256 * 1024
MANIFEST = "takes.csv"
MANIFEST_COLUMNS = [
    "file", "round", "generation", "template", "prompt", "seed", "params", "note", "width", "height",
    "seconds",
]  # fmt: skip


class _Sink:
    """A write-only file for zipfile: it holds what was written until the generator hands it on.
    zipfile sees no tell()/seek() and so writes sizes after each file (data descriptors)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _manifest_row(name: str, take: Take) -> list[object]:
    g = take.generation
    return [
        name,
        g.round.title,
        g.pk,
        g.template.name,
        g.prompt,
        g.params.get("seed", ""),
        json.dumps(g.params, sort_keys=True),
        take.note,
        take.width,
        take.height,
        f"{take.duration:.2f}" if take.duration else "",
    ]


def takes_zip(
    takes: Iterable[Take], *, entry_name: Callable[[Take], str], chunk_size: int = CHUNK
) -> Iterator[bytes]:
    """A ZIP of these takes, each under `entry_name(take)`, with the manifest last."""
    sink = _Sink()
    rows: list[list[object]] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
        for take in takes:
            name = entry_name(take)
            try:
                src = take.file.open("rb")
            except FileNotFoundError:
                # One lost file must not break the whole archive: say so in the manifest instead.
                rows.append(_manifest_row(f"(missing) {name}", take))
                continue
            info = zipfile.ZipInfo(name, date_time=timezone.localtime(take.created_at).timetuple()[:6])
            info.file_size = take.file.size  # zipfile decides from it whether the entry needs ZIP64
            with src, archive.open(info, "w") as dst:
                while chunk := src.read(chunk_size):
                    dst.write(chunk)
                    yield sink.drain()
            rows.append(_manifest_row(name, take))
            yield sink.drain()
        archive.writestr(
            MANIFEST, "".join(csv_lines(MANIFEST_COLUMNS, rows)), compress_type=zipfile.ZIP_DEFLATED
        )
    yield sink.drain()
