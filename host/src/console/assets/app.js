// wasmhook console: progressive enhancements only (the pages work as plain forms without it).
// Loaded as an external file: the Content-Security-Policy allows no inline script.
"use strict";

// Buttons with data-copy="id" copy that element's text to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.value !== undefined ? source.value : source.textContent)
    .then(() => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); })
    .catch(() => {});
});

// Forms with data-confirm="question" ask before they are sent.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// The plugin upload form sends the chosen file's bytes as the request body (PUT), with the
// session's CSRF token in a header.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.matches("form[data-upload]")) return;
  event.preventDefault();
  const status = form.querySelector("[role=status]");
  const name = form.querySelector("[name=name]").value.trim();
  const file = form.querySelector("[type=file]").files[0];
  if (!name || !file) { status.textContent = "Choose a name and a .wasm file."; return; }
  status.textContent = "Uploading…";
  const response = await fetch(form.dataset.upload + encodeURIComponent(name), {
    method: "PUT",
    headers: { "x-csrf-token": form.querySelector("[name=_csrf]").value, "content-type": "application/wasm" },
    body: file,
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({}));
  if (response.ok) { window.location.reload(); return; }
  status.textContent = (answer.error && answer.error.message) || ("Upload failed: " + response.status);
});

// Regions with an id and data-live="ms" stay current: while the tab is visible the page is
// fetched again every that many milliseconds and the region's content replaced by its new copy.
document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("[data-live][id]")) {
    const every = Math.max(1000, parseInt(region.dataset.live, 10) || 3000);
    setInterval(async () => {
      if (document.hidden) return;
      const response = await fetch(window.location.href, { credentials: "same-origin" }).catch(() => null);
      if (!response || !response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById(region.id);
      if (fresh) region.replaceChildren(...fresh.childNodes);
    }, every);
  }
});
