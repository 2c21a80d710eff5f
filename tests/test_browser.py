"""A filmmaker in a real browser (headless Chromium driven by Playwright)."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from generations.models import Generation

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-real-password-9"


@pytest.fixture
def page(monkeypatch):  # type: ignore[no-untyped-def]
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser.new_page()
        browser.close()
        # ORM calls made while Playwright's loop ran opened their own connection: close it
        # so the test database can be dropped.
        connections.close_all()


def log_in(page: Page, url: str, username: str) -> None:
    page.goto(url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_a_filmmaker_watches_a_generation_render_live(live_stack, page, owner, open_round):
    # The server checks passwords with its own (default) hasher; few iterations keep it quick.
    hasher = PBKDF2PasswordHasher()
    owner.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    owner.save()
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker(frame_delay=0.12)

    log_in(page, live_stack.url, owner.username)
    expect(page.locator("h1")).to_contain_text("Round 1")
    expect(page.locator("body.live")).to_have_count(1)  # the WebSocket is connected
    page.evaluate("window.__sameDocument = true")

    page.fill("textarea[name=prompt]", "a red kite over the cliffs")
    page.click("details.raw summary")  # the raw fields behind the presets
    page.fill("input[name=frames]", "25")
    page.fill("input[name=width]", "128")
    page.fill("input[name=height]", "96")
    page.click("button[type=submit]")

    card = page.locator("article.card").first
    expect(card).to_have_attribute("data-status", "running", timeout=20_000)
    seen = set()
    while card.get_attribute("data-status") == "running":
        # Read without waiting: the card moves to the takes' grid the moment it finishes.
        value = page.evaluate("document.querySelector('article.card .progress')?.ariaValueNow")
        if value is not None:
            seen.add(int(value))
        page.wait_for_timeout(100)
    assert len({v for v in seen if 0 < v < 100}) >= 2, f"the bar did not move: {sorted(seen)}"

    expect(card).to_have_attribute("data-status", "succeeded", timeout=20_000)
    video = card.locator("video.take")
    expect(video).to_have_count(1)
    meta = video.evaluate(
        """v => new Promise(done => {
            const report = () =>
                done({w: v.videoWidth, h: v.videoHeight, d: v.duration, err: v.error && v.error.code});
            if (v.readyState >= 1) { report(); return; }
            v.addEventListener('loadedmetadata', report);
            v.addEventListener('error', report);
            v.load();
        })"""
    )
    assert meta["err"] is None and (meta["w"], meta["h"]) == (128, 96) and meta["d"] > 0, meta
    expect(page.locator("#my-takes video")).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert Generation.objects.get().status == Generation.Status.SUCCEEDED
