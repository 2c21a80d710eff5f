"""The media probe runs in a child process under limits, and says what a file is by probing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from generations.dispatch import media
from tests.media import make_video
from tests.test_sniff_schema import png


def test_it_finds_a_videos_type_size_length_poster_and_thumbnail(tmp_path: Path) -> None:
    info = media.probe_file(make_video(tmp_path / "v.bin", frames=9, width=64, height=48))
    assert (info.content_type, info.extension, info.kind) == ("video/mp4", ".mp4", "video")
    assert (info.width, info.height, info.frame_count) == (64, 48, 9)
    assert info.poster_png.startswith(b"\x89PNG") and info.thumbnail_jpeg.startswith(b"\xff\xd8")


def test_it_refuses_what_is_not_a_video_or_an_image(tmp_path: Path) -> None:
    page = tmp_path / "page.mp4"
    page.write_bytes(b"<html><script>alert(1)</script></html>")
    with pytest.raises(media.MediaRefused, match="not a video or image"):
        media.probe_file(page)


def test_it_reads_an_images_size_before_decoding_it(tmp_path: Path, settings) -> None:
    settings.MEDIA_MAX_SIDE = 100
    big = tmp_path / "big.png"
    big.write_bytes(png(101, 2))
    with pytest.raises(media.MediaRefused, match="101x2 is larger"):
        media.probe_file(big)


def test_it_survives_a_probe_that_runs_out_of_memory(tmp_path: Path, settings) -> None:
    settings.MEDIA_PROBE_MEMORY_MB = 64  # less than PyAV alone: the child dies, the web process does not
    with pytest.raises(media.MediaRefused, match="could not be read"):
        media.probe_file(make_video(tmp_path / "v.mp4"))


def test_it_gives_up_on_a_probe_past_its_time(tmp_path: Path, settings) -> None:
    settings.MEDIA_PROBE_TIMEOUT = 0
    with pytest.raises(media.MediaRefused, match="too long"):
        media.probe_file(make_video(tmp_path / "v.mp4"))
