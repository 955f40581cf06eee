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

// A live page's feed comes over a WebSocket, not an EventSource: a
// browser opens at most six HTTP/1.1 connections per host, and each
// EventSource holds one while its page is open, so with six live pages
// open every other page of this server waited. WebSockets are pooled apart
// from that limit. LiveSocket gives the SSE extension what it uses of an
// EventSource (listeners by event name, onopen, onerror, readyState,
// close); each frame is one event, {event, id, data}. A dropped socket is
// opened again after a pause, from the last event received (the server's
// `last_event_id`), as an EventSource would with Last-Event-ID; the
// extension's own retry (which would start over from the page's render)
// is never needed.
class LiveSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = new URL(url, window.location.href).href; // as an EventSource's
    this.wsUrl = new URL(this.url);
    this.wsUrl.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.readyState = EventSource.CONNECTING;
    this.lastEventId = null;
    this.failures = 0;
    this.onopen = null;
    this.onerror = null;
    this.connect();
  }

  connect() {
    const url = new URL(this.wsUrl);
    if (this.lastEventId !== null) url.searchParams.set("last_event_id", this.lastEventId);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.readyState = EventSource.OPEN;
      this.failures = 0;
      if (this.onopen) this.onopen(new Event("open"));
    };
    ws.onmessage = (m) => {
      let e;
      try {
        e = JSON.parse(m.data);
      } catch {
        return;
      }
      if (e.id) this.lastEventId = e.id;
      this.dispatchEvent(new MessageEvent(e.event, { data: e.data, lastEventId: e.id || "" }));
    };
    ws.onclose = () => {
      if (this.readyState === EventSource.CLOSED || ws !== this.ws) return;
      this.readyState = EventSource.CONNECTING;
      if (this.onerror) this.onerror(new Event("error"));
      this.failures += 1;
      const pause = Math.min(500 * 2 ** (this.failures - 1), 15000);
      this.retry = window.setTimeout(() => this.connect(), pause);
    };
  }

  close() {
    this.readyState = EventSource.CLOSED;
    window.clearTimeout(this.retry);
    this.ws.close();
  }
}

// A page that follows a live stream closes it when the browser hides the
// page. The back/forward cache keeps a page left behind, frozen, and with
// it its connection. The SSE extension makes its sources through
// htmx.createEventSource (its documented hook), so this script sees each
// one. A page shown again from that cache is reloaded, to follow its
// streams from now.
const streams = new Set();
let streamsClosed = false;
window.htmx.createEventSource = (url) => {
  for (const s of streams) if (s.readyState === EventSource.CLOSED) streams.delete(s);
  const source = new LiveSocket(url);
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
