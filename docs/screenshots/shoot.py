#!/usr/bin/env python
"""The screenshots of docs/screenshots/, taken with Playwright on the demo.

Start a fresh demo first (`WORKSHOP_LOCAL_DIR=/tmp/shots-demo deploy/up.sh --frame-delay 0.35`), then
`.venv/bin/python docs/screenshots/shoot.py [http://127.0.0.1:8000] [/tmp/shots-demo/demo-logins.txt]`:
three filmmakers submit takes, one keeps a long one running, the instructor opens the live room;
the round page (1280x800 and a 390x844 phone), the take viewer and the live room are written here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

HERE = Path(__file__).resolve().parent
BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
LOGINS = Path(sys.argv[2] if len(sys.argv) > 2 else ".local/demo-logins.txt")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
DESKTOP = {"width": 1280, "height": 800}
SHOTS = [
    ("a red kite hangs over sea cliffs at dawn, slow dolly in", "16:9", "2 s"),
    ("neon rain on a Tokyo side street, handheld, 35mm", "2.39:1", "2 s"),
    ("a lighthouse keeper lights the lamp, warm tungsten, static wide", "4:3", "2 s"),
    ("fog rolls through a pine forest, drone rising", "16:9", "3 s"),
    ("a dancer spins in an empty warehouse, god rays", "9:16", "2 s"),
    ("close-up of hands kneading bread, soft window light", "1:1", "2 s"),
]
LONG = [
    ("the last tram crosses a snowy bridge at night, slow push in", "16:9", "10 s"),
    ("a heron lifts off a misty lake, telephoto, 120 fps feel", "2.39:1", "8 s"),
]


def logins() -> dict[str, str]:
    rows = [line.split() for line in LOGINS.read_text().splitlines() if line.strip()]
    return {row[1]: row[2] for row in rows}


def log_in(page: Page, username: str, password: str) -> None:
    page.goto(BASE + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def submit(page: Page, prompt: str, aspect: str, length: str) -> None:
    page.fill("textarea[name=prompt]", prompt)
    page.get_by_role("button", name=aspect, exact=True).click()
    page.get_by_role("button", name=length, exact=True).click()
    page.keyboard.press("Control+Enter")
    expect(page.locator(".tile-prompt", has_text=prompt).first).to_be_visible()
    page.wait_for_timeout(300)


def main() -> None:
    people = logins()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pages = {}
        for name in ("filmmaker1", "filmmaker2", "filmmaker3"):
            pages[name] = browser.new_context(viewport=DESKTOP).new_page()
            log_in(pages[name], name, people[name])
            expect(pages[name].locator("body.live")).to_have_count(1)
        me = pages["filmmaker1"]
        submit(pages["filmmaker2"], "a fox crosses a frozen river, wide", "16:9", "2 s")
        submit(pages["filmmaker3"], "a paper boat in a gutter stream, macro", "4:3", "2 s")
        for shot in SHOTS:
            submit(me, *shot)
        expect(me.locator("#my-takes .tile")).to_have_count(len(SHOTS), timeout=240_000)
        for shot in LONG:
            submit(me, *shot)
        submit(pages["filmmaker2"], "a fox crosses a frozen river, close-up", "16:9", "8 s")
        preview = me.locator("#my-queue .tile.status-running img.tile-preview").first
        expect(preview).to_be_visible(timeout=60_000)
        me.wait_for_timeout(2500)
        me.mouse.move(5, 5)
        me.screenshot(path=HERE / "round-desktop.png")

        me.locator("#my-takes .tile-open").nth(1).click()
        viewer = me.locator("#viewer")
        expect(viewer.locator("video")).to_have_count(1)
        me.wait_for_timeout(800)
        me.keyboard.press("c")
        expect(viewer.locator(".g-circle")).to_have_attribute("aria-pressed", "true")
        me.keyboard.press("n")
        me.keyboard.type("opening shot: keep the drift")
        me.keyboard.press("Enter")
        me.wait_for_timeout(1500)
        me.screenshot(path=HERE / "viewer.png")
        me.keyboard.press("Escape")
        me.keyboard.press("Escape")

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        mobile = phone.new_page()
        log_in(mobile, "filmmaker1", people["filmmaker1"])
        expect(mobile.locator("body.live")).to_have_count(1)
        mobile.evaluate("window.scrollTo(0, document.querySelector('#my-queue').offsetTop - 60)")
        mobile.wait_for_timeout(800)
        mobile.screenshot(path=HERE / "round-phone.png")

        teacher = browser.new_context(viewport=DESKTOP).new_page()
        log_in(teacher, "instructor", people["instructor"])
        teacher.locator(".panel-nav").get_by_role("link", name="Live room").click()
        expect(teacher.locator("body.live")).to_have_count(1)
        teacher.wait_for_timeout(1500)
        # At a glance: the figures, then the queue with what finished lately, the filmmakers, the GPUs.
        teacher.evaluate("window.scrollTo(0, document.querySelector('.figures').offsetTop - 16)")
        teacher.wait_for_timeout(500)
        teacher.screenshot(path=HERE / "room.png")
        browser.close()


if __name__ == "__main__":
    main()
