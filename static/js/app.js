// Shows whether live updates are connected (the dot in the corner).
document.addEventListener("htmx:wsOpen", () => document.body.classList.add("live"));
document.addEventListener("htmx:wsClose", () => document.body.classList.remove("live"));
