// The round page (the studio): the composer's presets, counter, seed and shortcut; the tiles'
// hover play, stale warning and smooth previews; the take viewer and its keys.
// Everything is delegated from the document, so fragments swapped in by htmx or the socket keep
// working, and nothing here builds markup the server should render.
(() => {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  const mac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

  // --- The composer ---------------------------------------------------------------------------
  const form = () => document.getElementById("submit-form");
  const input = (name) => form()?.querySelector(`[name="${name}"]`);

  // The frame count nearest `seconds` at the current fps, as the template allows (mirrors
  // generations.authoring.params.snap).
  function snap(field, value) {
    const step = Number(field.step) || 1;
    const offset = Number(field.dataset.offset || 0);
    const lo = field.min === "" ? -Infinity : Number(field.min);
    const hi = field.max === "" ? Infinity : Number(field.max);
    let n = Math.round((value - offset) / step) * step + offset;
    if (n < lo) n = Math.ceil((lo - offset) / step) * step + offset;
    if (n > hi) n = Math.floor((hi - offset) / step) * step + offset;
    return n;
  }
  function presetValues(chip) {
    return Object.entries(chip.dataset)
      .filter(([key]) => key.startsWith("set") && key.length > 3)
      .map(([key, value]) => [key[3].toLowerCase() + key.slice(4), value]);
  }
  function refreshComposer() {
    const f = form();
    if (!f) return;
    const frames = input("frames");
    const fps = Number(input("fps")?.value || 0);
    $$("[data-preset][data-seconds]", f).forEach((chip) => {
      if (frames && fps) {
        const n = snap(frames, Number(chip.dataset.seconds) * fps);
        chip.dataset.setFrames = String(n);
        chip.title = `${n} frames · ${(n / fps).toFixed(1)} s at ${fps} fps`;
      }
    });
    $$("[data-preset]", f).forEach((chip) => {
      const on = presetValues(chip).every(([name, value]) => input(name)?.value === value);
      chip.setAttribute("aria-pressed", on ? "true" : "false");
    });
    const summary = $("[data-raw-summary]", f);
    if (summary) {
      const parts = [];
      if (frames?.value) parts.push(fps ? `${frames.value} f · ${(frames.value / fps).toFixed(1)} s` : `${frames.value} f`);
      if (input("width")?.value && input("height")?.value) parts.push(`${input("width").value}×${input("height").value}`);
      if (fps) parts.push(`${fps} fps`);
      summary.textContent = parts.join(" · ");
    }
    $$("[data-counter]", f).forEach((counter) => {
      const field = document.getElementById(counter.dataset.counter);
      const max = Number(counter.dataset.max);
      const n = field ? field.value.length : 0;
      counter.textContent = `${n} / ${max}`;
      counter.classList.toggle("is-near", n > max * 0.9 && n <= max);
      counter.classList.toggle("is-over", n > max);
    });
    const lock = $("[data-seed-lock]", f);
    const help = $("[data-seed-help]", f);
    if (lock && help) {
      help.textContent = lock.checked
        ? (input("seed")?.value ? "Locked: every take uses this seed." : "Locked: type or roll a seed to keep.")
        : "Blank: a new random seed for each take.";
    }
    $$("[data-submit-shortcut]").forEach((k) => { k.textContent = mac ? "⌘ ↵" : "Ctrl ↵"; });
  }
  document.addEventListener("click", (event) => {
    const chip = event.target.closest("[data-preset]");
    if (chip) {
      presetValues(chip).forEach(([name, value]) => {
        const field = input(name);
        if (field) {
          field.value = value;
          field.closest(".field")?.classList.remove("has-error");
        }
      });
      refreshComposer();
      return;
    }
    if (event.target.closest("[data-seed-dice]")) {
      const seed = input("seed");
      if (seed) {
        const max = Number(seed.max) || 4294967295;
        seed.value = String(Math.floor(Math.random() * (max + 1)));
        refreshComposer();
      }
    }
  });
  document.addEventListener("input", (event) => { if (event.target.closest("#submit-form")) refreshComposer(); });
  document.addEventListener("change", (event) => { if (event.target.closest("#submit-form")) refreshComposer(); });
  // Ctrl/Cmd+Enter sends the form from anywhere on the page (but not from the viewer's note).
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.metaKey || event.ctrlKey)) return;
    if (event.target.closest("dialog[open]")) return;
    const f = form();
    const button = f?.querySelector("button[type=submit]");
    if (f && button && !button.disabled) {
      event.preventDefault();
      f.requestSubmit(button);
    }
  });
  // Generate shows a card at once, from the page's <template id="sending-card">: in a burst the
  // answer can take a few hundred milliseconds. The answer's queue replaces it with the real card;
  // after a refusal or a failed send it goes away. A push that re-renders the queue meanwhile (a
  // take finishing) would drop it: it goes back into the new queue until the answer comes.
  let sending = null;
  function showSending() {
    const tiles = $("#my-queue .tiles");
    if (!sending || !tiles) return;
    $(":scope > .empty", tiles)?.setAttribute("hidden", "");
    tiles.append(sending);
  }
  document.addEventListener("htmx:beforeSend", (event) => {
    if (event.detail.elt?.id !== "submit-form") return;
    const proto = document.getElementById("sending-card");
    if (!proto) return;
    sending?.remove();
    sending = proto.content.firstElementChild.cloneNode(true);
    $("[data-sending-prompt]", sending).textContent = input("prompt")?.value.trim() ?? "";
    showSending();
  });
  const requeue = () => { if (sending && !sending.isConnected) showSending(); };
  document.addEventListener("htmx:oobAfterSwap", requeue);
  document.addEventListener("htmx:afterSwap", requeue);
  document.addEventListener("htmx:afterRequest", (event) => {
    // A refused form was swapped out: htmx says so on what held it, `elt` then names that.
    if (event.detail.requestConfig?.elt?.id !== "submit-form") return;
    sending = null;
    $$("[data-sending]").forEach((card) => card.remove());
    $("#my-queue .tiles > .empty[hidden]")?.removeAttribute("hidden");
  });
  // A refused submission shows its first problem, even when it was sent from the phone's bottom bar.
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target?.id !== "submit-form") return;
    const problem = $(".has-error, .form-error", form());
    if (problem) {
      problem.closest("details")?.setAttribute("open", "");
      problem.scrollIntoView({ block: "center", behavior: "smooth" });
      problem.querySelector("input, textarea")?.focus({ preventScroll: true });
    }
  });

  // --- Tiles ----------------------------------------------------------------------------------
  // Hover plays a take muted; leaving stops it.
  document.addEventListener("pointerover", (event) => {
    if (event.pointerType !== "mouse") return;
    const video = event.target.closest(".tile-open")?.querySelector("video");
    if (video && video.paused) video.play().catch(() => {});
  });
  document.addEventListener("pointerout", (event) => {
    const open = event.target.closest(".tile-open");
    if (!open || open.contains(event.relatedTarget)) return;
    const video = open.querySelector("video");
    if (video && !video.paused) { video.pause(); video.currentTime = 0; }
  });
  // The last word the page heard about each running job; silence shows on its tile.
  const heard = new Map();
  const STALE_MS = 10000;
  function noteTiles(root) {
    const now = Date.now();
    const tiles = root.matches?.("[data-gen]") ? [root] : $$("[data-gen]", root);
    tiles.forEach((tile) => {
      const before = heard.get(tile.dataset.gen);
      if (before && before.status !== tile.dataset.status && tile.dataset.status === "succeeded") {
        tile.classList.add("is-fresh");
      }
      heard.set(tile.dataset.gen, { at: now, status: tile.dataset.status });
    });
  }
  document.addEventListener("htmx:load", (event) => noteTiles(event.target));
  setInterval(() => {
    const now = Date.now();
    $$(".tile[data-status=running]").forEach((tile) => {
      const line = $("[data-stale]", tile);
      if (!line) return;
      const age = now - (heard.get(tile.dataset.gen)?.at ?? now);
      line.hidden = age < STALE_MS;
      if (!line.hidden) line.textContent = `last update ${Math.round(age / 1000)} s ago`;
    });
  }, 1000);
  // The submit answer was rendered before it travelled; meanwhile the socket may have brought newer
  // states of the same cards (the conductor dispatches at once). Keep those instead of stepping back.
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.elt?.id !== "submit-form" || !event.detail.serverResponse) return;
    const answer = document.createElement("template");
    answer.innerHTML = event.detail.serverResponse;
    $$("article.tile[id^=gen-]", answer.content).forEach((card) => {
      const shown = document.getElementById(card.id);
      if (!shown) return;
      if (shown.closest("#my-takes")) card.remove();  // already finished: it lives in the takes
      else {
        const copy = shown.cloneNode(true);
        copy.removeAttribute("hx-swap-oob");
        card.replaceWith(copy);
      }
    });
    event.detail.serverResponse = answer.innerHTML;
  });
  // A new preview frame replaces the tile's image: keep showing the previous one while it loads.
  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const old = event.detail.target?.querySelector?.(".tile-preview");
    const fresh = event.detail.fragment?.querySelector?.(".tile-preview");
    if (old && fresh && old.complete && old.currentSrc) fresh.style.backgroundImage = `url("${old.currentSrc}")`;
  });

  // --- The take viewer --------------------------------------------------------------------------
  const viewer = () => document.getElementById("viewer");
  let order = [];
  let at = -1;
  function takes() { return $$("#my-takes [data-viewer-take]").map((el) => el.dataset.viewerTake); }
  function openTake(index) {
    const dialog = viewer();
    order = takes();
    if (!dialog || !order.length) return;
    at = (index + order.length) % order.length;
    $("[data-viewer-count]", dialog).textContent = `${at + 1} / ${order.length}`;
    htmx.ajax("GET", `/takes/${order[at]}/viewer`, { target: "#viewer-body", swap: "innerHTML" });
    if (!dialog.open) dialog.showModal();
  }
  function step(by) {
    const current = order[at];
    order = takes();
    const index = order.indexOf(current);
    openTake((index < 0 ? at : index) + by);
  }
  function closeViewer() {
    const dialog = viewer();
    $("video", dialog)?.pause();
    if (dialog?.open) dialog.close();
    const tile = $(`#my-takes [data-viewer-take="${order[at]}"]`);
    (tile?.closest(".tile")?.querySelector(".tile-open") || tile)?.focus({ preventScroll: true });
  }
  document.addEventListener("click", (event) => {
    const opener = event.target.closest(".tile-open[data-viewer-take]");
    if (opener) {
      event.preventDefault();
      openTake(takes().indexOf(opener.dataset.viewerTake));
      return;
    }
    const stepper = event.target.closest("[data-viewer-step]");
    if (stepper) step(Number(stepper.dataset.viewerStep));
    if (event.target.closest("[data-viewer-close]") || event.target === viewer()) closeViewer();
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target?.id !== "viewer-body") return;
    const video = $("video", event.detail.target);
    if (video) video.play().catch(() => { video.muted = true; video.play().catch(() => {}); });
  });
  viewer()?.addEventListener("close", () => $("video", viewer())?.pause());
  document.addEventListener("keydown", (event) => {
    const dialog = viewer();
    if (event.metaKey || event.ctrlKey || event.altKey) return;
    if (dialog?.open) {
      if (typing(event.target)) {
        if (event.key === "Escape") { event.preventDefault(); event.target.blur(); }
        return;
      }
      const key = event.key.toLowerCase();
      if (key === "arrowright") { event.preventDefault(); step(1); }
      else if (key === "arrowleft") { event.preventDefault(); step(-1); }
      else if (key === "c") {
        event.preventDefault();
        const button = $("#viewer-body .g-circle");
        // A key pressed the instant a take arrives may beat htmx to the new button: process it first.
        if (button) { htmx.process(button); button.click(); }
      }
      // Enter in a note form htmx has not processed yet is caught by app.js's submit net.
      else if (key === "n") { event.preventDefault(); $("#viewer-body .g-note input")?.focus(); }
      else if (key === "escape") { event.preventDefault(); closeViewer(); }
      return;
    }
    // In the grid: arrows move between tiles, c circles the focused take, Enter opens it.
    const open = event.target.closest?.(".tile-open");
    if (!open || typing(event.target)) return;
    const tiles = $$("#my-takes .tile-open");
    const index = tiles.indexOf(open);
    const across = Math.max(1, tiles.filter((t) => t.getBoundingClientRect().top === tiles[0].getBoundingClientRect().top).length);
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: across, ArrowUp: -across };
    if (event.key in moves) {
      event.preventDefault();
      tiles[Math.min(Math.max(index + moves[event.key], 0), tiles.length - 1)]?.focus();
    } else if (event.key.toLowerCase() === "c") {
      event.preventDefault();
      const circled = !!open.closest(".tile").querySelector(".tile-circled");
      htmx.ajax("POST", `/gallery/takes/${open.dataset.viewerTake}/circle`, {
        values: { circled: circled ? "0" : "1" }, swap: "none", source: open,
      });
    }
  });

  document.addEventListener("htmx:load", refreshComposer);
  document.addEventListener("DOMContentLoaded", () => { refreshComposer(); noteTiles(document); });
})();
