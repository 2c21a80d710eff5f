"""Every page type in a real browser (headless Chromium) on the real daphne, with our Content
Security Policy on: no page may trip it (no inline script, style or handler, nothing from another
origin), and what the templates used to do inline still works from static/ (the live socket, bar
widths, dismissing an announcement, confirming an action)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from accounts.models import User
from generations.instructor import announcements, spotlight
from generations.models import Generation, Workshop
from tests.conftest import make_user
from tests.test_gallery import make_take

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PASSWORD = "a-real-password-9"
WORKFLOW = Path(__file__).resolve().parent.parent / "generations" / "workflows" / "model_free_video.json"

# Collects what the page itself reports: the securitypolicyviolation events (installed before any
# page script runs, so it sees them all).
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));
"""


class Browser:
    """One browser tab per user that records every CSP violation, from the console and the page."""

    def __init__(self, pw, url: str) -> None:  # type: ignore[no-untyped-def]
        self.url = url
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        self.violations: list[str] = []
        self.seen: list[str] = []

    def tab(self) -> Page:
        page = self.browser.new_context().new_page()
        page.add_init_script(WATCH)
        page.on(
            "console",
            lambda m: (
                self.violations.append(f"{page.url}: {m.text}")
                if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text
                else None
            ),
        )
        return page

    def visit(self, page: Page, path: str, *, status: int = 200) -> Page:
        response = page.goto(self.url + path)
        assert response is not None and response.status == status, (path, response and response.status)
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        # What the page loads after it (videos, posters, scripts' requests) may trip the policy too.
        try:
            page.wait_for_load_state("networkidle", timeout=5000)
        except PlaywrightTimeout:  # a few admin pages never go quiet; 5 s of them is enough
            pass
        self.collect(page)
        self.seen.append(path)
        return page

    def collect(self, page: Page) -> None:
        self.violations += [f"{page.url}: {v}" for v in page.evaluate("window.__csp || []")]
        page.evaluate("window.__csp = []")


def log_in(page: Page, url: str, user: User, path: str = "/accounts/login/") -> None:
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save()
    page.goto(url + path)
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def browser(live_stack, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    live_stack.start_web()
    with sync_playwright() as pw:
        b = Browser(pw, live_stack.url)
        yield b
        b.browser.close()
        connections.close_all()


@pytest.mark.timeout(480)
def test_no_page_trips_the_content_security_policy(browser, owner, other, instructor, open_round) -> None:
    kite = make_take(owner, open_round, prompt="a red kite", circled=True)
    heron = make_take(owner, open_round, prompt="a heron", seed=8)
    make_take(owner, open_round, prompt="a still", image=True)
    running = Generation.objects.filter(pk=make_take(other, open_round).generation_id)
    running.update(status=Generation.Status.RUNNING, progress=42)
    mine_running = make_take(owner, open_round, prompt="still rendering").generation_id
    Generation.objects.filter(pk=mine_running).update(status=Generation.Status.RUNNING, progress=42)
    Workshop.objects.create(name="Day one", gpu_budget=100)
    announcements.announcement_create(text="Lunch at one", by=instructor)
    spotlight.spotlight_set(take=kite)
    admin = make_user("root", is_staff=True, is_superuser=True)

    # The login page and the filmmaker's pages.
    filmmaker = browser.tab()
    browser.visit(filmmaker, "/accounts/login/")
    log_in(filmmaker, browser.url, owner)
    page = browser.visit(filmmaker, f"/rounds/{open_round.pk}/")
    expect(page.locator("body.live")).to_have_count(1)  # connect-src lets our own WebSocket in
    progress = page.locator(f"#gen-{mine_running} progress.progress")
    assert progress.evaluate("p => p.value") == 42  # no style attribute needed for the bar
    page.click("#notices .notice .notice-dismiss")
    expect(page.locator("#notices .notice")).to_have_count(0)
    page.reload()
    expect(page.locator("body.live")).to_have_count(1)
    expect(page.locator("#notices .notice")).to_have_count(0)  # stays dismissed in this browser
    browser.collect(page)
    page = browser.visit(filmmaker, "/gallery/")
    expect(page.locator("body.live")).to_have_count(1)
    aspect = page.locator(f"#tile-{kite.pk} .g-media").evaluate("m => m.style.aspectRatio")
    assert aspect == f"{kite.width} / {kite.height}"
    page.click(f"#tile-{kite.pk} .g-play")  # inline play: the video loads from our origin
    video = page.locator(f"#tile-{kite.pk} video")
    # (Polled from here: wait_for_function would eval a string in the page, which the policy forbids.)
    for _ in range(100):
        if video.evaluate("v => v.readyState") >= 1:
            break
        page.wait_for_timeout(100)
    assert video.evaluate("v => v.readyState") >= 1 and video.evaluate("v => v.error") is None
    browser.collect(page)
    browser.visit(filmmaker, f"/rounds/{open_round.pk}/gallery/")
    browser.visit(filmmaker, f"/gallery/compare?t={kite.pk}&t={heron.pk}")
    browser.visit(filmmaker, "/gallery/contact-sheet")
    browser.visit(filmmaker, "/instructor/", status=403)
    browser.visit(filmmaker, "/rounds/999999/", status=404)

    # The instructor's pages.
    teacher = browser.tab()
    log_in(teacher, browser.url, instructor)
    browser.visit(teacher, "/instructor/")
    page = browser.visit(teacher, f"/instructor/rounds/{open_round.pk}/room")
    expect(page.locator("body.live")).to_have_count(1)
    assert page.locator(".spend progress.progress").evaluate("p => p.value") >= 0  # no style attribute
    browser.visit(teacher, f"/instructor/rounds/{open_round.pk}/takes")
    browser.visit(teacher, f"/instructor/rounds/{open_round.pk}/edit")
    browser.visit(teacher, "/instructor/rounds/new")
    browser.visit(teacher, f"/instructor/rounds/{open_round.pk}/close")
    browser.visit(teacher, "/instructor/exports")
    browser.visit(teacher, "/instructor/planner")
    page = browser.visit(teacher, "/screen")
    expect(page.locator("body.live")).to_have_count(1)
    expect(page.locator("video.stage-media")).to_have_count(1)
    page = browser.visit(teacher, "/instructor/accounts/")
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Reset password?" No: nothing happens
    page.click(f"#account-{other.pk} button:has-text('Reset password')")
    expect(page).to_have_url(browser.url + "/instructor/accounts/")
    page.once("dialog", lambda dialog: dialog.accept())  # Yes: the new login card
    page.click(f"#account-{other.pk} button:has-text('Reset password')")
    expect(page.locator(".login-card")).to_have_count(1)
    browser.collect(page)
    page = browser.visit(teacher, "/instructor/accounts/")
    page.fill("#names", "Ana López\nBen Okafor")
    page.click("text=Create accounts and print cards")
    expect(page.locator(".login-card")).to_have_count(2)
    browser.collect(page)

    # The admin, and its workflow import (upload, then the confirm step).
    root = browser.tab()
    log_in(root, browser.url, admin, path="/admin/login/")
    browser.visit(root, "/admin/")
    for model in ("round", "generation", "take", "workflowtemplate", "workshop", "announcement", "worker"):
        browser.visit(root, f"/admin/generations/{model}/")
    browser.visit(root, f"/admin/generations/round/{open_round.pk}/change/")
    browser.visit(root, f"/admin/generations/workflowtemplate/{open_round.templates.get().pk}/change/")
    browser.visit(root, "/admin/generations/workflowtemplate/add/")
    browser.visit(root, "/admin/accounts/user/")
    browser.visit(root, "/admin/axes/accessattempt/")
    page = browser.visit(root, "/admin/generations/workflowtemplate/import/")
    page.set_input_files("input[name=file]", str(WORKFLOW))
    page.click("input[type=submit]")
    expect(page.locator("#import-fields")).to_have_count(1)
    browser.collect(page)

    assert browser.violations == [], "\n".join(browser.violations)
    assert len(browser.seen) >= 30
