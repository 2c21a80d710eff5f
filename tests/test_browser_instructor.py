"""The instructor and a filmmaker in one real browser (two contexts, two logins, headless
Chromium): the round opens, an announcement arrives and the projector switches, all without a
reload on the watching page."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from accounts.models import User
from generations.instructor import spotlight
from generations.models import Round
from tests.media import make_video
from tests.test_browser import ARGS, CHROMIUM, PASSWORD
from tests.test_instructor import finish

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(monkeypatch):  # type: ignore[no-untyped-def]
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
        connections.close_all()


def logged_in(browser: Browser, base: str, user: User, path: str) -> Page:
    """A page of its own browser context (its own cookies), logged in as `user`, at `path`."""
    # The server checks passwords with its own (default) hasher; few iterations keep it quick.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save()
    page = browser.new_context().new_page()
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(base + path)
    return page


def watching(page: Page) -> None:
    """The page's WebSocket is up; a marker tells later whether the page was reloaded."""
    expect(page.locator("body.live")).to_have_count(1)
    page.evaluate("window.__sameDocument = true")


def test_it_shows_a_filmmaker_the_round_the_instructor_opens_without_a_reload(
    live_stack, browser, owner, instructor, open_round
) -> None:
    Round.objects.filter(pk=open_round.pk).update(status=Round.Status.PAUSED)
    live_stack.start_web()
    filmmaker = logged_in(browser, live_stack.url, owner, f"/rounds/{open_round.pk}/")
    expect(filmmaker.locator("#round-head")).to_have_attribute("data-status", "paused")
    expect(filmmaker.locator("#submit-state button")).to_be_disabled()
    watching(filmmaker)

    teacher = logged_in(browser, live_stack.url, instructor, "/instructor/")
    teacher.locator(f"#round-{open_round.pk}").get_by_role("button", name="Resume").click()

    expect(filmmaker.locator("#round-head")).to_have_attribute("data-status", "open")
    expect(filmmaker.locator("#round-head .badge")).to_have_text("Open")
    expect(filmmaker.locator("#submit-state button")).to_be_enabled()
    assert filmmaker.evaluate("window.__sameDocument") is True
    expect(teacher.locator(f"#round-{open_round.pk} .badge")).to_have_text("Open")


def test_it_brings_an_announcement_to_a_filmmakers_page(
    live_stack, browser, owner, instructor, open_round
) -> None:
    live_stack.start_web()
    filmmaker = logged_in(browser, live_stack.url, owner, f"/rounds/{open_round.pk}/")
    watching(filmmaker)

    teacher = logged_in(browser, live_stack.url, instructor, "/instructor/")
    teacher.fill("#announce-text", "Lunch in ten minutes")
    teacher.get_by_role("button", name="Announce").click()

    banner = filmmaker.locator("#notices .notice")
    expect(banner).to_contain_text("Lunch in ten minutes")
    assert filmmaker.evaluate("window.__sameDocument") is True
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_have_count(0)
    filmmaker.reload()  # dismissed stays dismissed in this browser
    expect(filmmaker.locator("body.live")).to_have_count(1)
    expect(banner).to_have_count(0)


def test_it_switches_the_screen_to_the_spotlight(
    live_stack, browser, owner, instructor, generation, tmp_path
) -> None:
    take = finish(generation, circled=True, content=make_video(tmp_path / "clip.mp4", frames=12).read_bytes())
    live_stack.start_web()
    teacher = logged_in(browser, live_stack.url, instructor, "/screen")
    watching(teacher)
    expect(teacher.locator("#stage video")).to_have_count(0)

    picker = teacher.context.new_page()
    picker.goto(f"{live_stack.url}/instructor/rounds/{generation.round_id}/takes")
    picker.locator(f"#pick-{take.pk}").get_by_role("button", name="Show on screen").click()

    video = teacher.locator("#stage video")
    expect(video).to_have_attribute("src", f"/takes/{take.pk}/file")
    expect(teacher.locator("#stage .caption")).to_have_text(generation.prompt)
    width = video.evaluate(
        """v => new Promise(done => {
            if (v.readyState >= 1) { done(v.videoWidth); return; }
            v.addEventListener('loadedmetadata', () => done(v.videoWidth));
            v.addEventListener('error', () => done(-1));
        })"""
    )
    assert width == 64 and teacher.evaluate("window.__sameDocument") is True
    assert spotlight.spotlight_current() == take


def test_it_streams_the_exports_through_daphne(live_stack, browser, owner, instructor, generation) -> None:
    finish(generation, circled=True, content=b"frame" * 300_000)
    live_stack.start_web()
    teacher = logged_in(browser, live_stack.url, instructor, "/instructor/exports")
    teacher.get_by_role("link", name="Download ZIP").wait_for()
    zipped = teacher.request.get(f"{live_stack.url}/instructor/exports/circled/{owner.pk}.zip")
    archive = zipfile.ZipFile(io.BytesIO(zipped.body()))
    assert archive.read(archive.namelist()[0]) == b"frame" * 300_000
    csv_text = teacher.request.get(f"{live_stack.url}/instructor/exports/generations.csv").text()
    assert generation.prompt in csv_text
