"""The round page as a studio, in a real browser (headless Chromium driven by Playwright) on the real
daphne: the Generate button that never scrolls away (desktop and phone), the take grid and viewer by
keyboard, the live preview of a running take, notices pinned to the top, the connection's truth when
the network goes, the toast after a note, and where an instructor lands."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from accounts.models import User
from generations.live import groups
from generations.models import Generation, Take
from generations.queue import services
from generations.queue.snapshot import line_publish
from tests.test_browser import ARGS, CHROMIUM, PASSWORD
from tests.test_gallery import make_take

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser(monkeypatch):  # type: ignore[no-untyped-def]
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
        connections.close_all()


def logged_in(
    browser: Browser, base: str, user: User, *, viewport: dict = DESKTOP, phone: bool = False
) -> Page:
    """A page of its own browser context, logged in as `user` (where the login lands it)."""
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save()
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
    page = context.new_page()
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def live(page: Page) -> None:
    expect(page.locator("body.live")).to_have_count(1)
    expect(page.locator(".live-pill")).to_have_text("Live")


def in_viewport(page: Page, selector: str) -> bool:
    """The element is on screen and nothing covers its centre."""
    return page.eval_on_selector(
        selector,
        """el => {
            const r = el.getBoundingClientRect();
            const off = r.bottom <= 0 || r.top >= innerHeight || r.right <= 0 || r.left >= innerWidth;
            if (r.width === 0 || off) return false;
            const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            return el === hit || el.contains(hit);
        }""",
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_it_keeps_generate_on_screen_wherever_you_scroll(live_stack, browser, owner, open_round, viewport):
    for i in range(12):
        make_take(owner, open_round, prompt=f"take number {i}", seed=i)
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, owner, viewport=viewport, phone=viewport is PHONE)
    live(page)
    expect(page.locator("#my-takes .tile")).to_have_count(12)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_timeout(300)
    assert page.evaluate("scrollY") > 400  # the page did scroll a long way
    assert in_viewport(page, "#submit-state button.generate")
    # And it sends the form from down there.
    page.evaluate("document.querySelector('textarea[name=prompt]').value = 'sent from the bottom'")
    page.click("#submit-state button.generate")
    expect(page.locator("#my-queue .tile")).to_have_count(1)
    assert Generation.objects.filter(params__prompt="sent from the bottom").exists()


def test_it_keeps_the_form_between_takes_and_renews_what_a_take_uses_up(
    live_stack, browser, owner, open_round
):
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    token = page.locator("#submit-token")
    page.fill("textarea[name=prompt]", "")
    page.keyboard.press("Control+Enter")  # refused: the form says why
    expect(page.locator("#field-prompt .field-error")).to_have_text("This field is required.")
    first_token = token.input_value()
    page.fill("textarea[name=prompt]", "a harbour at dawn")
    page.fill("input[name=seed]", "42")
    page.keyboard.press("Control+Enter")  # accepted: the whole form again, without the refusal
    expect(page.locator("#my-queue .tile")).to_have_count(1)
    expect(page.locator(".field-error")).to_have_count(0)
    expect(page.locator("input[name=seed]")).to_have_value("")  # unlocked: a new random seed next time
    assert token.input_value() != first_token
    page.fill("input[name=seed]", "43")
    page.check("[data-seed-lock]")
    second_token = token.input_value()
    page.keyboard.press("Control+Enter")  # accepted: only the token, the seed and the tick change
    expect(page.locator("#my-queue .tile")).to_have_count(2)
    expect(token).not_to_have_value(second_token)
    expect(page.locator("input[name=seed]")).to_have_value("43")  # locked: kept
    expect(page.locator("[data-seed-lock]")).to_be_checked()
    expect(page.locator("textarea[name=prompt]")).to_have_value("a harbour at dawn")
    page.keyboard.press("Control+Enter")  # the renewed token: a third take, not the second again
    expect(page.locator("#my-queue .tile")).to_have_count(3)
    assert sorted(g.params["seed"] for g in Generation.objects.filter(owner=owner)) == [42, 43, 43]


def test_it_shows_a_card_the_moment_generate_is_pressed_until_the_answer_comes(
    live_stack, browser, owner, open_round
):
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    held: list = []  # the submit POSTs, held here until the test lets each go on
    page.route("**/generate", lambda route: held.append(route))

    def sent():  # type: ignore[no-untyped-def]
        for _ in range(250):
            if held:
                return held.pop()
            page.wait_for_timeout(20)
        raise AssertionError("the submission was never sent")

    sending = page.locator("#my-queue [data-sending]")
    page.fill("textarea[name=prompt]", "a <b>harbour</b> at dawn")
    page.keyboard.press("Control+Enter")
    request = sent()
    expect(sending).to_have_count(1)  # while the answer is still to come
    expect(sending.locator(".tile-prompt")).to_have_text("a <b>harbour</b> at dawn")  # text, not markup
    expect(page.locator("#my-queue .tiles > .empty")).to_be_hidden()
    expect(page.locator("article.card")).to_have_count(0)  # not a job card to anything that looks for one
    # Meanwhile a take from another tab re-renders the queue over the socket: the card stays.
    params = {"prompt": "from another tab", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12}
    services.generation_create(
        owner=owner, round_id=open_round.pk, template=open_round.templates.get(), params=params
    )
    expect(page.locator("#my-queue .tile")).to_have_count(1)
    expect(sending).to_have_count(1)
    expect(page.locator("#my-queue .tiles > .empty")).to_be_hidden()
    request.continue_()
    expect(page.locator("#my-queue .tile")).to_have_count(2)  # the real card took its place
    expect(sending).to_have_count(0)

    page.fill("textarea[name=prompt]", "")
    page.keyboard.press("Control+Enter")
    request = sent()
    expect(sending).to_have_count(1)
    request.continue_()  # refused: the form says why, and no card stays
    expect(page.locator("#field-prompt .field-error")).to_have_text("This field is required.")
    expect(sending).to_have_count(0)

    page.fill("textarea[name=prompt]", "a second shot")
    page.keyboard.press("Control+Enter")
    request = sent()
    expect(sending).to_have_count(1)
    request.abort()  # never arrived: the card goes, the page says so
    expect(sending).to_have_count(0)
    expect(page.locator("#toasts .toast").filter(has_text="not sent")).to_be_visible()
    expect(page.locator("#my-queue .tile")).to_have_count(2)
    assert Generation.objects.filter(owner=owner).count() == 2


def test_it_moves_a_waiting_cards_place_in_line_without_drawing_the_card_again(
    live_stack, browser, owner, other, open_round, redis_conn
):
    template = open_round.templates.get()
    params = {"prompt": "a tram in the rain", "seed": 1, "frames": 9, "width": 64, "height": 64, "fps": 12}
    ahead = services.generation_create(owner=other, round_id=open_round.pk, template=template, params=params)
    mine = services.generation_create(owner=owner, round_id=open_round.pk, template=template, params=params)
    line_publish(redis_conn)
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    card = page.locator(f"#gen-{mine.pk}")
    expect(card.locator(".tile-big")).to_have_text("2")
    expect(card.locator(".tile-eta")).to_contain_text("2nd in line · ")
    card.evaluate("el => { el.dataset.drawn = 'once' }")
    services.generation_cancel(generation=ahead)  # the line moves: as the conductor does after a pass
    line_publish(redis_conn)
    groups.queue_moved(owner_ids={owner.pk})
    expect(card.locator(".tile-big")).to_have_text("1")
    expect(card.locator(".tile-eta")).to_contain_text("next · ")
    expect(card).to_have_attribute("data-drawn", "once")  # its lines changed, not the card
    expect(page.locator(f"#gen-{mine.pk}-line")).to_have_count(1)
    assert card.locator(".tile-prompt").text_content() == "a tram in the rain"


def test_it_browses_and_circles_takes_and_saves_a_note_by_keyboard(live_stack, browser, owner, open_round):
    takes = [make_take(owner, open_round, prompt=f"shot {n}", seed=n) for n in range(3)]
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    tiles = page.locator("#my-takes .tile-open")
    expect(tiles).to_have_count(3)  # newest first: shot 2, shot 1, shot 0
    tiles.first.focus()
    page.keyboard.press("ArrowRight")
    expect(tiles.nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("[data-viewer-count]")).to_have_text("2 / 3")
    expect(viewer.locator(".viewer-prompt")).to_have_text("shot 1")
    page.keyboard.press("ArrowRight")
    expect(viewer.locator(".viewer-prompt")).to_have_text("shot 0")
    page.keyboard.press("ArrowLeft")
    expect(viewer.locator(".viewer-prompt")).to_have_text("shot 1")
    page.keyboard.press("c")
    expect(viewer.locator(".g-circle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f"#gen-{takes[1].generation_id} .tile-circled")).to_be_visible()  # the grid follows
    page.keyboard.press("n")
    expect(viewer.locator(".g-note input")).to_be_focused()
    page.keyboard.type("the ending")
    page.keyboard.press("Enter")
    expect(page.locator("#toasts .toast").filter(has_text="Note saved.")).to_be_visible()
    page.keyboard.press("Escape")  # leaves the note field
    page.keyboard.press("Escape")  # closes the viewer
    expect(viewer).to_be_hidden()
    expect(tiles.nth(1)).to_be_focused()
    assert Take.objects.get(pk=takes[1].pk).note == "the ending" and Take.objects.get(pk=takes[1].pk).circled


def test_it_shows_the_preview_frame_of_a_running_take(live_stack, browser, owner, open_round):
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker(frame_delay=0.2)
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    page.fill("textarea[name=prompt]", "a slow pan over a harbour")
    page.get_by_role("button", name="5 s", exact=True).click()  # a length preset: 57 frames at 12 fps
    expect(page.locator("input[name=frames]")).to_have_value("57")
    page.keyboard.press("Control+Enter")
    tile = page.locator("#my-queue .tile.status-running")
    expect(tile).to_have_count(1, timeout=30_000)
    preview = tile.locator("img.tile-preview")
    expect(preview).to_be_visible(timeout=10_000)
    loaded = "img => (img.complete && img.naturalWidth > 0) || new Promise(ok => img.onload = () => ok(1))"
    assert preview.evaluate(loaded)


def test_it_pins_an_announcement_to_the_top_while_scrolled_down(
    live_stack, browser, owner, instructor, open_round
):
    for i in range(12):
        make_take(owner, open_round, prompt=f"take number {i}", seed=i)
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    title = page.title()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    teacher = logged_in(browser, live_stack.url, instructor)
    teacher.fill("#announce-text", "Lunch in ten minutes")
    teacher.get_by_role("button", name="Announce").click()
    notice = page.locator("#notices .notice").filter(has_text="Lunch in ten minutes")
    expect(notice).to_be_visible()
    assert in_viewport(page, "#notices .notice") and page.evaluate("scrollY") > 400
    expect(notice.locator("time")).to_have_text(re.compile(r"\d\d:\d\d"))
    page.wait_for_function("t => document.title !== t", arg=title)  # the tab's title flashes
    notice.get_by_role("button", name="Dismiss").click()
    expect(notice).to_have_count(0)
    page.reload()
    live(page)
    expect(page.locator("#notices .notice")).to_have_count(0)  # dismissed stays dismissed


def test_it_turns_amber_when_the_network_goes_and_shows_the_truth_when_it_comes_back(
    live_stack, browser, owner, open_round
):
    live_stack.start_web()
    live_stack.start_conductor()
    live_stack.start_worker(frame_delay=0.25)
    page = logged_in(browser, live_stack.url, owner)
    live(page)
    page.fill("textarea[name=prompt]", "a long take")
    page.get_by_role("button", name="8 s", exact=True).click()  # 97 frames at 12 fps
    page.keyboard.press("Control+Enter")
    tile = page.locator("#my-queue .tile.status-running")
    expect(tile).to_have_count(1, timeout=30_000)

    page.context.set_offline(True)
    went = time.monotonic()
    expect(page.locator("body.stale")).to_have_count(1, timeout=5_000)
    assert time.monotonic() - went <= 5.0
    expect(page.locator(".live-pill")).to_have_text("Reconnecting…")
    expect(tile.locator("[data-stale]")).to_contain_text("last update", timeout=15_000)
    generation = Generation.objects.get()
    frozen = int(tile.locator("progress").get_attribute("aria-valuenow"))

    page.context.set_offline(False)
    live(page)
    generation.refresh_from_db()
    shown = page.locator(f"#gen-{generation.pk}")
    if generation.status == Generation.Status.RUNNING:
        expect(shown.locator("progress")).not_to_have_attribute("aria-valuenow", str(frozen))
        assert int(shown.locator("progress").get_attribute("aria-valuenow")) >= int(generation.progress)
        expect(shown.locator("[data-stale]")).to_be_hidden()
    else:  # it finished while we were away: the page says so
        expect(shown).to_have_attribute("data-status", generation.status)


def test_it_lands_an_instructor_on_the_panel(live_stack, browser, instructor, open_round):
    live_stack.start_web()
    page = logged_in(browser, live_stack.url, instructor)
    expect(page).to_have_url(f"{live_stack.url}/instructor/")
    expect(page.locator(".panel-nav [aria-current]")).to_have_text("Rounds & workshop")
