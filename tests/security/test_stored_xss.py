"""Attack 3: a GPU host uploaded a page (HTML, SVG, or no type) and the app served it inline on its
own origin; a preview said text/html and was served as HTML; every upload URL was readable from
RQ. Now an upload needs the credential of the host holding the attempt, the server picks the type by
probing (anything but an allowed video or image is refused with 415), and media go out sandboxed."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from generations.models import SecurityEvent, Take
from tests.live import wait_for
from tests.media import make_video
from tests.security.conftest import browser, status_of, submit, succeeds

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]
PAGE = b"<html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
SANDBOX = "sandbox; default-src 'none'"


def put(url: str, body: bytes, auth: tuple[str, str], content_type: str = "text/html") -> httpx.Response:
    return httpx.put(url, content=body, auth=auth, headers={"Content-Type": content_type}, timeout=60)


def test_a_host_cannot_serve_a_page_from_the_apps_origin(
    stack, mallory, filmmaker, video_round, bait_template, instructor, tmp_path: Path
) -> None:
    legit = submit(filmmaker, video_round, frames=25)  # the honest worker's, running meanwhile
    submit(filmmaker, video_round, bait_template)
    held = mallory.take("image")
    # Its own attempt: a page, an SVG, a body with no type at all are not media.
    for body, content_type in ((PAGE, "text/html"), (SVG, "image/svg+xml"), (PAGE, "")):
        response = put(held["upload_url"] + "xss.html", body, mallory.auth, content_type)
        assert response.status_code == 415, (response.status_code, response.text)
    # A real video that claims to be HTML is stored as what it is.
    video = make_video(tmp_path / "v.mp4").read_bytes()
    assert put(held["upload_url"] + "xss.html", video, mallory.auth).status_code == 201
    take = Take.objects.get(generation_id=held["generation_id"])
    assert (take.content_type, take.filename) == ("video/mp4", "xss.mp4")
    # A preview that says text/html is dropped; only JPEG, PNG or WebP bytes are kept.
    mallory.event(
        type="preview",
        generation_id=held["generation_id"],
        attempt=held["attempt"],
        image=base64.b64encode(PAGE).decode(),
        content_type="text/html",
        width=64,
        height=48,
    )
    wait_for(
        lambda: SecurityEvent.objects.filter(kind="invalid-event", host__name="mallory").exists(),
        timeout=10,
        what="the preview to be dropped",
    )
    with browser(stack, instructor) as client:
        assert client.get(f"/generations/{held['generation_id']}/preview").status_code == 404
        served = client.get(f"/takes/{take.pk}/file")
        assert served.headers["content-type"] == "video/mp4"
        assert served.headers["content-security-policy"] == SANDBOX
        assert served.headers["x-content-type-options"] == "nosniff"
    legit = succeeds(stack, legit)
    with browser(stack, filmmaker) as client:
        served = client.get(f"/takes/{legit.current_takes()[0].pk}/file")
    assert served.status_code == 200 and served.headers["content-security-policy"] == SANDBOX


def test_an_upload_url_read_from_rq_is_useless_to_another_host(
    stack, mallory, filmmaker, video_round, tmp_path: Path
) -> None:
    legit = submit(filmmaker, video_round, frames=25)
    wait_for(lambda: status_of(legit) == "running", timeout=30, what="the honest worker to start")
    import json
    import zlib

    data = mallory.redis.hget(f"rq:job:gen-{legit.pk}-a1", "data")
    upload_url = json.loads(zlib.decompress(data))[3]["upload_url"]
    video = make_video(tmp_path / "v.mp4").read_bytes()
    assert put(upload_url + "mine.mp4", video, mallory.auth).status_code == 403
    assert httpx.put(upload_url + "mine.mp4", content=video, timeout=30).status_code == 401
    assert SecurityEvent.objects.filter(kind="foreign-upload", host__name="mallory").exists()
    legit = succeeds(stack, legit)
    assert [t.filename for t in legit.current_takes()] != ["mine.mp4"]
