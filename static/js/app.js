// What every page shares: the live connection's truth, toasts (feedback for what you did),
// notices (what you must not miss) and the burst window's countdown. Wired with listeners and
// data attributes only: no inline script or handler anywhere (the site runs under a strict CSP).
(() => {
  "use strict";

  // --- Connection truth --------------------------------------------------------------------
  // body.live: the socket is open and answering. A socket element with data-heartbeat pings
  // every PING_MS; with data-stale-after, no message for that long turns the page amber
  // ("reconnecting…", body.stale) and replaces the socket. Chromium can keep a socket "open"
  // while the network is gone, so a close event alone is not the truth.
  const PING_MS = 2000;
  const sockets = new Map(); // socket element -> {wrapper, current, lastMessage}
  const label = () => document.querySelector("[data-live-label] .live-text");
  function show(state) {
    document.body.classList.toggle("live", state === "live");
    document.body.classList.toggle("stale", state === "stale");
    const text = label();
    if (text) text.textContent = { live: "Live", stale: "Reconnecting…", connecting: "Connecting…" }[state];
  }
  function entry(elt) {
    if (!sockets.has(elt)) sockets.set(elt, { wrapper: null, current: null, lastMessage: 0 });
    return sockets.get(elt);
  }
  document.addEventListener("htmx:wsOpen", (event) => {
    const e = entry(event.target);
    e.wrapper = event.detail.socketWrapper;
    e.current = event.detail.event.target;
    e.lastMessage = Date.now();
    show("live");
  });
  document.addEventListener("htmx:wsClose", (event) => {
    const e = entry(event.target);
    // A replaced socket closes after its successor opened: that is no news.
    if (e.current && event.detail.event.target !== e.current) return;
    show(event.target.dataset.staleAfter ? "stale" : "connecting");
  });
  document.addEventListener("htmx:wsBeforeMessage", (event) => {
    entry(event.target).lastMessage = Date.now();
    if (document.body.classList.contains("stale")) show("live");
    if (event.detail.message === "pong") event.preventDefault(); // a heartbeat, not a fragment
  });
  function reconnect(elt, e) {
    e.lastMessage = Date.now(); // give the new socket its own full allowance
    if (e.wrapper) e.wrapper.reconnect();
  }
  setInterval(() => {
    const now = Date.now();
    sockets.forEach((e, elt) => {
      if (!document.body.contains(elt) || !e.current) return;
      if (elt.dataset.heartbeat && e.current.readyState === WebSocket.OPEN && now - (e.lastPing || 0) >= PING_MS) {
        e.lastPing = now;
        e.current.send(elt.dataset.heartbeat);
      }
      const limit = Number(elt.dataset.staleAfter || 0);
      if (limit && now - e.lastMessage > limit) {
        show("stale");
        reconnect(elt, e);
      }
    });
  }, 250);
  window.addEventListener("offline", () => { if (sockets.size) show("stale"); });
  window.addEventListener("online", () => sockets.forEach((e, elt) => reconnect(elt, e)));
  // Reconnect soon after a drop (htmx's default backoff grows to a minute).
  document.addEventListener("DOMContentLoaded", () => {
    if (window.htmx) htmx.config.wsReconnectDelay = (retry) => Math.min(500 * 2 ** retry, 4000) * (0.5 + Math.random() / 2);
  });

  // --- Toasts --------------------------------------------------------------------------------
  // A server answer carries one in its HX-Trigger header ({"toast": {"text", "kind"}}).
  function toast(text, kind = "ok") {
    const box = document.getElementById("toasts");
    if (!box || !text) return;
    const item = document.createElement("div");
    item.className = `toast kind-${kind}`;
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    const p = document.createElement("p");
    p.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "notice-dismiss";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => item.remove());
    item.append(p, close);
    box.append(item);
    while (box.children.length > 3) box.firstElementChild.remove();
    setTimeout(() => {
      item.classList.add("leaving");
      setTimeout(() => item.remove(), 300);
    }, kind === "error" ? 8000 : 4000);
  }
  window.workshopToast = toast;
  // A form swapped in an instant ago may not be htmx's yet: Enter would submit it natively (a GET of
  // the page itself, or a POST that leaves it). htmx cancels the submits it handles, so one that
  // reaches the document uncancelled is sent by htmx now.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (event.defaultPrevented || !form.matches?.("[hx-post], [hx-get]")) return;
    event.preventDefault();
    htmx.process(form);
    htmx.trigger(form, "submit");
  });
  document.addEventListener("toast", (event) => toast(event.detail.text ?? event.detail.value, event.detail.kind));
  document.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr.status;
    if (status >= 500 || status === 0) toast("The server did not answer as expected: try again.", "error");
    else if (event.detail.xhr.responseText && status < 500 && status !== 404) toast(event.detail.xhr.responseText.slice(0, 200), "error");
  });
  document.addEventListener("htmx:sendError", () => toast("No connection: your action was not sent.", "error"));

  // --- Notices -------------------------------------------------------------------------------
  // Fragments declare [data-notice] sources wherever they belong (an announcement, the round
  // paused, the quota reached); they are shown together in #notices at the top of the viewport
  // with their time, until dismissed (remembered in this browser). A new one flashes the tab's
  // title until the page has been looked at.
  const DISMISSED = "dismissed-notice-";
  const firstSeen = new Map();
  let unseen = false;
  function dismissed(key) { return localStorage.getItem(DISMISSED + key) === "1"; }
  function clock(date) { return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function renderNotices() {
    const stack = document.getElementById("notices");
    if (!stack) return;
    const sources = [...document.querySelectorAll(".notice-source[data-notice]")];
    const keys = new Set(sources.map((s) => s.dataset.notice));
    // A notice that went away may come back (paused again): forget its dismissal.
    Object.keys(localStorage).forEach((k) => {
      if (k.startsWith(DISMISSED + "round-") && !keys.has(k.slice(DISMISSED.length))) localStorage.removeItem(k);
    });
    stack.querySelectorAll(".notice").forEach((n) => { if (!keys.has(n.dataset.key) || dismissed(n.dataset.key)) n.remove(); });
    for (const source of sources) {
      const key = source.dataset.notice;
      if (dismissed(key)) continue;
      let item = stack.querySelector(`.notice[data-key="${CSS.escape(key)}"]`);
      if (!firstSeen.has(key)) {
        firstSeen.set(key, source.dataset.noticeTime ? new Date(source.dataset.noticeTime) : new Date());
        if (!item && document.readyState === "complete") flashTitle();
      }
      if (!item) {
        item = document.createElement("div");
        item.className = `notice kind-${source.dataset.noticeKind || "info"}`;
        item.dataset.key = key;
        item.setAttribute("role", "status");
        const mark = document.createElement("span");
        mark.className = "notice-mark";
        const text = document.createElement("p");
        text.className = "notice-text";
        const close = document.createElement("button");
        close.type = "button";
        close.className = "notice-dismiss";
        close.setAttribute("aria-label", "Dismiss");
        close.textContent = "×";
        close.addEventListener("click", () => {
          localStorage.setItem(DISMISSED + key, "1");
          item.remove();
        });
        item.append(mark, text, close);
        stack.append(item);
      }
      const text = item.querySelector(".notice-text");
      const time = document.createElement("time");
      time.dateTime = firstSeen.get(key).toISOString();
      time.textContent = clock(firstSeen.get(key));
      const title = document.createElement("strong");
      title.textContent = source.dataset.noticeTitle || "Notice";
      const body = document.createElement("span");
      body.textContent = source.textContent.trim();
      text.replaceChildren(title, time, body);
    }
  }
  // The title flashes until the page is looked at (visible and touched, typed or scrolled).
  const baseTitle = document.title;
  let flashing = null;
  function flashTitle() {
    unseen = true;
    if (flashing) return;
    let on = false;
    flashing = setInterval(() => {
      on = !on;
      document.title = on ? "● New notice · " + baseTitle : baseTitle;
    }, 1000);
  }
  function seen() {
    if (!unseen || document.visibilityState !== "visible") return;
    unseen = false;
    clearInterval(flashing);
    flashing = null;
    document.title = baseTitle;
  }
  ["pointerdown", "keydown", "scroll", "touchstart", "mousemove"].forEach((name) =>
    window.addEventListener(name, seen, { passive: true }));
  document.addEventListener("htmx:load", renderNotices);
  document.addEventListener("htmx:wsAfterMessage", renderNotices);
  document.addEventListener("DOMContentLoaded", renderNotices);

  // --- Countdowns (the burst window in the live room) tick between the server's pushes -----
  setInterval(() => {
    document.querySelectorAll("[data-countdown]").forEach((el) => {
      const left = Math.max(0, parseInt(el.dataset.countdown, 10) - 1);
      el.dataset.countdown = String(left);
      el.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    });
  }, 1000);

  // --- The login page: a login card's QR code brings the username along ----------------------
  document.addEventListener("DOMContentLoaded", () => {
    const name = new URLSearchParams(location.search).get("username");
    const field = document.querySelector(".login input[name=username]");
    if (name && field && !field.value) {
      field.value = name;
      document.querySelector(".login input[name=password]")?.focus();
    }
  });

  // --- Sizes from the server, without style attributes (the CSP forbids them) ---------------
  // A tile's aspect ratio ("16 / 9"), a bar's width in percent; re-applied to swapped fragments.
  const within = (root, selector) =>
    root.querySelectorAll ? [...(root.matches?.(selector) ? [root] : []), ...root.querySelectorAll(selector)] : [];
  function sizes(root) {
    within(root, "[data-width]").forEach((el) => { el.style.width = `${parseFloat(el.dataset.width) || 0}%`; });
    within(root, "[data-aspect]").forEach((el) => { el.style.aspectRatio = el.dataset.aspect; });
  }
  document.addEventListener("htmx:load", (event) => sizes(event.target));
  document.addEventListener("DOMContentLoaded", () => sizes(document.body));

  // --- Confirmations, printing and the projector's full screen, without inline handlers --------
  document.addEventListener("click", (event) => {
    const asking = event.target.closest("[data-confirm]");
    if (asking && !window.confirm(asking.dataset.confirm)) event.preventDefault();
    if (event.target.closest("[data-print]")) window.print();
    const fullscreen = event.target.closest("[data-fullscreen]");
    if (fullscreen) {
      document.documentElement.requestFullscreen?.().catch(() => {});
      fullscreen.remove();
    }
  });
})();
