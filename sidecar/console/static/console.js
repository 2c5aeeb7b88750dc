// The console's only script: live regions, confirmations, the log tail. No dependencies, no build.
// Everything it inserts from data is set as text (textContent), never parsed as HTML, except the
// live regions, which are HTML the server rendered and escaped.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function visible() {
  return document.visibilityState === "visible";
}

async function refresh(region) {
  if (!visible() || region.dataset.busy) return;
  region.dataset.busy = "1";
  try {
    const response = await fetch(region.dataset.live, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    });
    if (response.status === 401) {
      window.location.assign("/console/login?next=" + encodeURIComponent(location.pathname + location.search));
      return;
    }
    if (response.ok) {
      const html = await response.text();
      // keep focus where it was when the focused element is inside the region
      const focused = region.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
      region.innerHTML = html;
      if (focused) region.querySelector(`a[href="${CSS.escape(focused)}"]`)?.focus();
      region.dataset.updated = String(Date.now());
    }
  } catch {
    // the sidecar restarting or the network blinking: the next tick tries again
  } finally {
    delete region.dataset.busy;
  }
}

for (const region of document.querySelectorAll("[data-live]")) {
  const every = Math.max(1, Number(region.dataset.every) || 5) * 1000;
  setInterval(() => refresh(region), every);
}
document.addEventListener("visibilitychange", () => {
  if (visible()) document.querySelectorAll("[data-live]").forEach(refresh);
});

// The Overview also listens for probe results (Server-Sent Events): a row changes as soon as its
// probe does; the polling above stays as the fallback when the stream is down.
const pushed = document.querySelector("[data-events]");
if (pushed && "EventSource" in window) {
  const events = new EventSource(pushed.dataset.events);
  events.addEventListener("checks", () => refresh(pushed));
  window.addEventListener("pagehide", () => events.close());
}

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// --- the log tail ---------------------------------------------------------------------------------

const MAX_ROWS = 500;
const tail = document.querySelector("table[data-tail]");
if (tail) {
  const body = tail.tBodies[0];
  const level = document.getElementById("level");
  const source = document.getElementById("source");
  const pause = document.getElementById("tail-pause");
  const status = document.getElementById("tail-state");
  let after = 0;
  let paused = false;
  let busy = false;

  const cell = (row, text, className) => {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  };

  const addLine = (line) => {
    const row = body.insertRow();
    row.className = "level-" + line.level;
    cell(row, new Date(line.time * 1000).toISOString().slice(11, 23));
    cell(row, line.source);
    cell(row, line.level, "badge " + line.level);
    cell(row, line.message, "output");
    const idCell = row.insertCell();
    if (line.request_id) {
      const a = document.createElement("a");
      a.href = "/console/request?q=" + encodeURIComponent(line.request_id);
      a.textContent = line.request_id;
      a.className = "mono";
      idCell.append(a);
    }
  };

  const setState = () => {
    const hidden = !visible();
    status.textContent = paused ? "paused" : hidden ? "paused (tab hidden)" : "live";
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
  };

  const poll = async () => {
    if (paused || !visible() || busy) return;
    busy = true;
    try {
      const query = new URLSearchParams({ after: String(after), level: level.value, source: source.value });
      const response = await fetch(tail.dataset.tail + "?" + query, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        window.location.assign("/console/login?next=/console/logs");
        return;
      }
      if (!response.ok) return;
      const data = await response.json();
      after = data.seq;
      for (const line of data.lines) addLine(line);
      while (body.rows.length > MAX_ROWS) body.deleteRow(0);
      for (const name of data.sources ?? []) {
        if (![...source.options].some((o) => o.value === name)) source.add(new Option(name, name));
      }
      tail.dataset.seq = String(after);
    } catch {
      // try again on the next tick
    } finally {
      busy = false;
    }
  };

  const restart = () => {
    body.replaceChildren();
    after = 0;
    poll();
  };
  level.addEventListener("change", restart);
  source.addEventListener("change", restart);
  pause.addEventListener("click", () => {
    paused = !paused;
    setState();
    if (!paused) poll();
  });
  document.addEventListener("visibilitychange", () => {
    setState();
    if (visible()) poll();
  });
  setState();
  poll();
  setInterval(poll, 1000);
}
