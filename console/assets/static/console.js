// Courier console: live refresh of the overview, confirmations, and
// "select all" boxes. Everything works without it except the refresh.
"use strict";

// Ask before a form does something hard to undo: data-confirm on the form
// or on the button that submits it.
document.addEventListener("submit", (e) => {
  const msg = (e.submitter && e.submitter.dataset.confirm) || e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) {
    e.preventDefault();
  }
});

// A header checkbox with data-select-all="name" ticks every box of that
// name in its form.
document.addEventListener("change", (e) => {
  const name = e.target.dataset && e.target.dataset.selectAll;
  if (!name) return;
  for (const box of e.target.form.querySelectorAll(`input[type=checkbox][name="${name}"]`)) {
    box.checked = e.target.checked;
  }
});

// An element with data-refresh="/path" is replaced by that path's HTML
// every data-every milliseconds; a failed refresh says so and keeps trying.
function refresh(el) {
  const every = Number(el.dataset.every) || 2000;
  const tick = async () => {
    try {
      const resp = await fetch(el.dataset.refresh, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.redirected || resp.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
      el.innerHTML = await resp.text();
      el.dataset.updated = new Date().toISOString();
      el.classList.remove("stale");
    } catch (err) {
      el.classList.add("stale");
      el.title = "not updated: " + err.message;
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}
document.querySelectorAll("[data-refresh]").forEach(refresh);
