"""A filmmaker in a real browser (headless Chromium driven by Playwright) on a round whose template is
the model-free ComfyUI template, rendered by a real ComfyUI (tests/comfyui_real.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from accounts.models import User
from generations.authoring import library
from generations.models import Generation, Round
from tests.live import LiveStack
from tests.test_browser import ARGS, CHROMIUM
from tests.test_browser_gallery import log_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every state the card shows, with its progress: a card can be swapped several times between two
# polls, so the page records them itself.
RECORD_CARD = """() => {
    window.__card = [];
    const record = () => {
        const card = document.querySelector('article.card');
        if (!card) return;
        const bar = card.querySelector('.progress');
        const seen = [card.dataset.status, bar ? Number(bar.getAttribute('aria-valuenow')) : null];
        const last = window.__card[window.__card.length - 1];
        if (!last || last[0] !== seen[0] || last[1] !== seen[1]) window.__card.push(seen);
    };
    new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""

# Play the take (muted, as the page's autoplay rules allow) and report once time has moved on.
PLAY = """v => new Promise(done => {
    const report = () => done({ready: v.readyState, time: v.currentTime, w: v.videoWidth,
                               h: v.videoHeight, err: v.error && v.error.code, paused: v.paused});
    v.muted = true;
    v.addEventListener('error', report);
    v.play().catch(report);
    const started = performance.now();
    const wait = () => (v.currentTime > 0.5 || performance.now() - started > 10000)
        ? report() : setTimeout(wait, 50);
    wait();
})"""


@pytest.fixture
def page(monkeypatch):  # type: ignore[no-untyped-def]
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()
        # ORM calls made while Playwright's loop ran opened their own connection: close it
        # so the test database can be dropped.
        connections.close_all()


@pytest.fixture
def model_free_round(db: None) -> Round:
    template, _ = library.template_install(library.MODEL_FREE)
    rnd = Round.objects.create(title="Round 1", brief="One shot.", status=Round.Status.OPEN)
    rnd.templates.add(template)
    return rnd


def test_a_model_free_generation_on_a_real_comfyui_plays_in_the_browser(
    live_stack: LiveStack, real_comfyui: str, page: Page, owner: User, model_free_round: Round, tmp_path: Path
) -> None:
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker("e2e-comfyui-1", backend="comfyui", comfyui_url=real_comfyui)

    log_in(page, live_stack.url, owner)
    expect(page.locator("h1")).to_contain_text("Round 1")
    expect(page.locator(".template-name")).to_contain_text("Model-free test clip")
    expect(page.locator("body.live")).to_have_count(1)  # the WebSocket is connected
    page.evaluate("window.__sameDocument = true")
    page.evaluate(RECORD_CARD)

    # 72 frames at 320x240 take a couple of seconds on a CPU: long enough to see the card run.
    page.fill("input[name=seed]", "21")
    page.click("details.raw summary")  # the raw fields behind the presets
    page.fill("input[name=frames]", "72")
    page.fill("input[name=width]", "320")
    page.fill("input[name=height]", "240")
    page.fill("input[name=fps]", "24")
    page.click("button[type=submit]")

    card = page.locator("article.card").first
    expect(card).to_have_attribute("data-status", "succeeded", timeout=90_000)
    seen = page.evaluate("window.__card")
    # Without a reload, and never a step back. "queued" and "dispatched" last a blink: the socket may
    # bring the dispatched card before the submit answer arrives (which then keeps the newer card).
    in_order = list(dict.fromkeys(status for status, _ in seen))
    assert in_order == [s for s in ("queued", "dispatched", "running", "succeeded") if s in in_order], seen
    assert in_order[-2:] == ["running", "succeeded"], seen
    assert any(0 < (value or 0) < 100 for status, value in seen if status == "running"), seen

    video = card.locator("video.take")
    expect(video).to_have_count(1)
    played = video.evaluate(PLAY)
    assert played["err"] is None and not played["paused"] and played["ready"] >= 2, played
    assert played["time"] > 0.5 and (played["w"], played["h"]) == (320, 240), played
    page.screenshot(path=str(tmp_path / "take_playing.png"), full_page=True)
    expect(page.locator("#my-takes video")).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert Generation.objects.get().status == Generation.Status.SUCCEEDED
