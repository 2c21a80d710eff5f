from __future__ import annotations

from gpu_worker import protocol
from gpu_worker.previews import PreviewForwarder, shrink

from .fake_comfyui import FIXTURES, noise_png

PNG = (FIXTURES / "binary" / "08_progress_binary_metadata_ws_001.png").read_bytes()


def test_it_turns_a_preview_into_a_small_jpeg() -> None:
    shrunk = shrink(PNG, "image/png")
    assert shrunk is not None and shrunk.data.startswith(b"\xff\xd8")
    assert (shrunk.content_type, shrunk.width, shrunk.height) == ("image/jpeg", 96, 96)


def test_it_downscales_a_heavy_preview_under_the_cap() -> None:
    shrunk = shrink(noise_png(2048, 1024), "image/png")
    assert shrunk is not None and len(shrunk.data) <= protocol.PREVIEW_MAX_BYTES
    assert (shrunk.width, shrunk.height) in ((320, 160), (160, 80))


def test_it_skips_what_it_cannot_make_small() -> None:
    assert shrink(noise_png(64, 64), max_bytes=100) is None
    assert shrink(b"GIF89a...", "image/gif") is None


def test_it_forwards_at_most_one_preview_per_interval() -> None:
    sent, now = [], [0.0]
    forward = PreviewForwarder(lambda *args: sent.append(args), clock=lambda: now[0])
    for at in (0.0, 0.1, 0.4, 0.5, 0.9, 1.2):
        now[0] = at
        forward(PNG, "image/png")
    assert len(sent) == 3  # at 0.0, 0.5 and 1.2 s
