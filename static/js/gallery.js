// The gallery's few behaviours: inline play, the image lightbox, picking takes to compare,
// filters that apply on change, and the compare page's synced player.
// Everything is delegated from the document, so fragments swapped in by htmx keep working.
(() => {
  "use strict";

  // --- Inline play: a tile shows a lazy thumbnail until it is clicked ---------------------
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".g-play");
    if (!button) return;
    const video = document.createElement("video");
    video.src = button.dataset.src;
    const img = button.querySelector("img");
    if (img) video.poster = img.currentSrc || img.src;
    Object.assign(video, { controls: true, autoplay: true, muted: true, loop: true, playsInline: true });
    button.replaceWith(video);
    video.play().catch(() => {});
  });

  // --- Lightbox for images ----------------------------------------------------------------
  document.addEventListener("click", (event) => {
    const zoom = event.target.closest(".g-zoom");
    const dialog = document.getElementById("lightbox");
    if (zoom && dialog) {
      dialog.querySelector("img").src = zoom.dataset.full;
      dialog.showModal();
    } else if (dialog && event.target === dialog) {
      dialog.close(); // a click on the backdrop
    }
  });

  // --- Compare: tick 2 to 4 takes; ticks survive live re-renders of the tiles -------------
  const picked = new Set();
  const boxes = () => document.querySelectorAll('input[name="t"][form="compare-form"]');
  function showPicked() {
    const button = document.querySelector("[data-compare-button]");
    const count = document.querySelector("[data-compare-count]");
    if (!button) return;
    boxes().forEach((box) => { box.checked = picked.has(box.value); });
    const n = picked.size;
    button.disabled = n < 2 || n > 4;
    button.textContent = n ? `Compare ${n}` : "Compare";
    if (count) {
      count.textContent = n > 4 ? "At most 4 takes" : n < 2 ? "Tick 2 to 4 takes to compare them" : "";
    }
  }
  document.addEventListener("change", (event) => {
    const box = event.target;
    if (box.matches('input[name="t"][form="compare-form"]')) {
      box.checked ? picked.add(box.value) : picked.delete(box.value);
      showPicked();
    } else if (box.closest("form[data-autosubmit]")) {
      box.form.requestSubmit();
    }
  });
  document.addEventListener("submit", (event) => {
    if (event.target.id !== "compare-form") return;
    // The ticked boxes live in the tiles (form="compare-form"); send the picks in their order.
    event.preventDefault();
    const query = new URLSearchParams([...picked].map((id) => ["t", id]));
    window.location.assign(`${event.target.action}?${query}`);
  });
  document.addEventListener("htmx:load", showPicked);
  document.addEventListener("DOMContentLoaded", () => {
    boxes().forEach((box) => { if (box.checked) picked.add(box.value); });
    showPicked();
    document.querySelectorAll(".g-apply").forEach((b) => { b.hidden = true; });
    document.querySelectorAll("[data-sync-player]").forEach(syncedPlayer);
  });

  // Printing ([data-print]) is app.js's, for every page.

  // --- The synced player: one control drives every video of the compare page ---------------
  // The longest video is the clock; the others follow it, and are pulled back when they drift
  // by more than a frame or two. Shorter ones wait on their last frame until the loop restarts.
  function syncedPlayer(root) {
    const videos = [...root.querySelectorAll("video[data-sync]")];
    const play = root.querySelector("[data-sync-play]");
    const scrub = root.querySelector("[data-sync-scrub]");
    const time = root.querySelector("[data-sync-time]");
    const loop = root.querySelector("[data-sync-loop]");
    const rate = root.querySelector("[data-sync-rate]");
    const frame = 1 / (parseFloat(root.dataset.fps) || 24);
    const DRIFT = 0.08;
    let playing = false;
    if (!videos.length) {
      root.querySelector(".cmp-controls")?.setAttribute("hidden", "");
      return;
    }
    const length = (v) => (Number.isFinite(v.duration) ? v.duration : 0);
    const clock = () => videos.reduce((a, v) => (length(v) > length(a) ? v : a), videos[0]);
    const total = () => length(clock());

    function seek(t) {
      videos.forEach((v) => { v.currentTime = Math.max(0, Math.min(t, Math.max(length(v) - 0.001, 0))); });
      show(t);
    }
    function show(t) {
      const d = total();
      if (d > 0 && document.activeElement !== scrub) scrub.value = String(Math.round((t / d) * 1000));
      time.textContent = `${t.toFixed(2)} / ${d.toFixed(2)} s`;
    }
    function start() {
      if (total() > 0 && clock().currentTime >= total() - 0.01) seek(0);
      playing = true;
      play.textContent = "Pause";
      const t = clock().currentTime;
      videos.forEach((v) => { if (t < length(v)) v.play().catch(() => {}); });
      requestAnimationFrame(tick);
    }
    function stop() {
      playing = false;
      play.textContent = "Play";
      videos.forEach((v) => v.pause());
    }
    function tick() {
      if (!playing) return;
      const master = clock();
      const t = master.currentTime;
      for (const v of videos) {
        if (v === master) continue;
        if (t < length(v)) {
          if (Math.abs(v.currentTime - t) > DRIFT) v.currentTime = t;
          if (v.paused) v.play().catch(() => {});
        }
      }
      if (master.ended || t >= total()) {
        if (loop.checked) { seek(0); videos.forEach((v) => v.play().catch(() => {})); }
        else { stop(); show(total()); return; }
      }
      show(t);
      requestAnimationFrame(tick);
    }

    play.addEventListener("click", () => (playing ? stop() : start()));
    scrub.addEventListener("input", () => seek((Number(scrub.value) / 1000) * total()));
    rate.addEventListener("change", () => videos.forEach((v) => { v.playbackRate = Number(rate.value); }));
    root.querySelectorAll("[data-sync-step]").forEach((b) => b.addEventListener("click", () => {
      stop();
      seek(Math.max(0, Math.min(total(), clock().currentTime + Number(b.dataset.syncStep) * frame)));
    }));
    videos.forEach((v) => {
      v.loop = false;
      v.addEventListener("loadedmetadata", () => show(clock().currentTime));
      v.addEventListener("click", () => (playing ? stop() : start()));
    });
    root.syncedPlayer = { start, stop, seek, videos };
    show(0);
  }
})();
