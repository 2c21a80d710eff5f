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
