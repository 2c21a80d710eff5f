// Shows whether live updates are connected (the dot in the corner).
document.addEventListener("htmx:wsOpen", () => document.body.classList.add("live"));
document.addEventListener("htmx:wsClose", () => document.body.classList.remove("live"));
// Countdowns (the burst window in the live room) tick between the server's pushes.
setInterval(() => {
  document.querySelectorAll("[data-countdown]").forEach((el) => {
    const left = Math.max(0, parseInt(el.dataset.countdown, 10) - 1);
    el.dataset.countdown = String(left);
    el.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  });
}, 1000);

// What templates would otherwise do with inline code, which our Content Security Policy forbids
// (no inline scripts, event handlers or style attributes): each is a data- attribute read here.
// Everything is delegated or re-applied on htmx:load, so fragments swapped in keep working.
(() => {
  "use strict";
  const within = (root, selector) =>
    root.querySelectorAll ? [...(root.matches?.(selector) ? [root] : []), ...root.querySelectorAll(selector)] : [];

  function apply(root) {
    // Sizes from the server: a bar's width in percent, a tile's aspect ratio ("16 / 9").
    within(root, "[data-width]").forEach((el) => { el.style.width = `${parseFloat(el.dataset.width) || 0}%`; });
    within(root, "[data-aspect]").forEach((el) => { el.style.aspectRatio = el.dataset.aspect; });
    // Announcements a filmmaker dismissed stay hidden in this browser.
    within(root, "[data-announcement]").forEach((el) => {
      if (localStorage.getItem(`dismissed-announcement-${el.dataset.announcement}`)) el.remove();
    });
  }
  document.addEventListener("htmx:load", (event) => apply(event.target));
  document.addEventListener("DOMContentLoaded", () => apply(document.body));

  document.addEventListener("click", (event) => {
    const dismiss = event.target.closest("[data-dismiss-announcement]");
    if (dismiss) {
      localStorage.setItem(`dismissed-announcement-${dismiss.dataset.dismissAnnouncement}`, "1");
      dismiss.closest(".announcement")?.remove();
    }
    const confirmed = event.target.closest("[data-confirm]");
    if (confirmed && !window.confirm(confirmed.dataset.confirm)) event.preventDefault();
    if (event.target.closest("[data-print]")) window.print();
    const fullscreen = event.target.closest("[data-fullscreen]");
    if (fullscreen) {
      document.documentElement.requestFullscreen?.().catch(() => {});
      fullscreen.remove();
    }
  });
})();
