// Liftoff web UI: the only script of our own (CSP allows no inline script).
// "Select all" for a queue page's bulk stop.
document.addEventListener("change", (e) => {
  const all = e.target.closest("[data-select-all]");
  if (!all) return;
  for (const box of document.querySelectorAll(`#${all.dataset.selectAll} input[name=item]`)) box.checked = all.checked;
});

// The launch form's version list shows the versions of the job typed or
// picked (each option names its job); without this script it shows all.
// A job is typed as [[entity/]project/]name[:alias]; options name project/name.
function projectAndName(typed) {
  const parts = typed.trim().split(":")[0].split("/");
  if (parts.length === 1) parts.unshift("default");
  return parts.slice(-2).join("/");
}
function showVersionsOf(select) {
  const job = projectAndName(document.getElementById(select.dataset.versionsOf).value);
  for (const o of select.options) {
    if (!o.dataset.job) continue;
    o.hidden = o.disabled = o.dataset.job !== job;
    if (o.disabled && o.selected) select.value = "latest";
  }
}
for (const select of document.querySelectorAll("select[data-versions-of]")) {
  const job = document.getElementById(select.dataset.versionsOf);
  job.addEventListener("input", () => showVersionsOf(select));
  job.addEventListener("change", () => showVersionsOf(select));
  showVersionsOf(select);
}

// A page that follows a live stream closes it when the browser hides the
// page. The back/forward cache keeps a page left behind, frozen, and with
// it its SSE connection: after six such pages every new request to this
// server waits for one of the browser's six connections per host. The SSE
// extension makes its EventSources through htmx.createEventSource (its
// documented hook), so this script sees each one. A page shown again from
// that cache is reloaded, to follow its streams from now.
const streams = new Set();
let streamsClosed = false;
const openStream = window.htmx.createEventSource;
window.htmx.createEventSource = (url) => {
  for (const s of streams) if (s.readyState === EventSource.CLOSED) streams.delete(s);
  const source = openStream(url);
  streams.add(source);
  return source;
};
window.addEventListener("pagehide", () => {
  if (streams.size === 0) return;
  for (const s of streams) s.close();
  streams.clear();
  streamsClosed = true;
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted && streamsClosed) window.location.reload();
});
