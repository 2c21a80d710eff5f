"""A filmmaker's gallery in a real browser (headless Chromium driven by Playwright), on the real
daphne: circle a take (live on a second tab), compare two with one control, remix, download."""

from __future__ import annotations

import zipfile

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from generations.models import Take
from tests.test_gallery import make_take

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PASSWORD = "a-real-password-9"


@pytest.fixture
def page(monkeypatch):  # type: ignore[no-untyped-def]
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # One context: a second tab shares the session cookie, as in a real browser.
        yield browser.new_context(accept_downloads=True).new_page()
        browser.close()
        connections.close_all()


def log_in(page: Page, url: str, user) -> None:
    # The server checks passwords with its own (default) hasher; few iterations keep it quick.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save()
    page.goto(url + "/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def video_times(page: Page) -> list[float]:
    return page.eval_on_selector_all("video[data-sync]", "vs => vs.map(v => v.currentTime)")


def test_a_filmmaker_circles_compares_remixes_and_downloads(live_stack, page, owner, open_round):
    kite = make_take(owner, open_round, prompt="a red kite over the cliffs", seed=11, video_frames=48)
    heron = make_take(owner, open_round, prompt="a heron in the reeds", seed=12, video_frames=48)
    live_stack.start_web()
    log_in(page, live_stack.url, owner)
    page.goto(live_stack.url + "/gallery/")
    second = page.context.new_page()  # another tab of the same filmmaker
    second.goto(live_stack.url + "/gallery/")
    for tab in (page, second):
        expect(tab.locator("body.live")).to_have_count(1)

    # Circle: the button, the round's counter and the other tab all follow.
    page.click(f"#actions-{kite.pk} .g-circle")
    expect(page.locator(f"#actions-{kite.pk} .g-circle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f"#mine-r{open_round.pk}-head")).to_contain_text("1 of 3 circled")
    expect(second.locator(f"#actions-{kite.pk}")).to_have_class("g-actions is-circled")
    assert Take.objects.get(pk=kite.pk).circled
    page.bring_to_front()  # a background tab's animation frames are throttled

    # Compare: one control plays both videos, in step.
    page.check(f"#tile-{kite.pk} input[name=t]")
    page.check(f"#tile-{heron.pk} input[name=t]")
    page.click("[data-compare-button]")
    expect(page.locator("video[data-sync]")).to_have_count(2)
    # Polled from here: wait_for_function evals its predicate in the page, which our CSP forbids.
    for _ in range(300):
        if page.eval_on_selector_all("video[data-sync]", "vs => vs.every(v => v.readyState >= 3)"):
            break
        page.wait_for_timeout(100)
    page.click("[data-sync-play]")
    page.wait_for_timeout(800)
    early = video_times(page)
    page.wait_for_timeout(800)
    later = video_times(page)
    assert min(early) > 0.3 and max(early) - min(early) < 0.15, early
    assert min(later) > max(early) + 0.4 and max(later) - min(later) < 0.15, later
    page.click("[data-sync-play]")  # pause, then scrub both to the middle
    page.locator("[data-sync-scrub]").evaluate("s => { s.value = 500; s.dispatchEvent(new Event('input')); }")
    times = video_times(page)
    assert all(abs(t - times[0]) < 0.05 for t in times) and 1.5 < times[0] < 2.5, times
    expect(page.locator("tr.differs th", has_text="Prompt")).to_have_count(1)

    # Remix: the round's form is filled with the heron's settings and a fresh seed.
    page.click(f"#cmp-{heron.pk} a.g-remix")
    expect(page.locator("textarea[name=prompt]")).to_have_value("a heron in the reeds")
    expect(page.locator("input[name=seed]")).to_have_value("")
    expect(page.locator("input[name=frames]")).to_have_value("9")

    # Download the circled takes as one ZIP.
    page.goto(live_stack.url + "/gallery/")
    with page.expect_download() as download:
        page.click("a.g-zip")
    with zipfile.ZipFile(download.value.path()) as archive:
        name = f"round-1-r{open_round.pk}/g{kite.generation_id}-seed11-take.mp4"
        assert archive.namelist() == [name, "takes.csv"]
        assert archive.read(name) == kite.file.open("rb").read()
