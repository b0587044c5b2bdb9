// Live run page: follows /ws/runs/<id>/ (ordered by seq), reconnects by itself and falls back to
// polling the status endpoint while the socket is down.
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const wsPath = root.dataset.wsUrl;
  const statusUrl = root.dataset.statusUrl;
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  let lastSeq = -1;
  let retries = 0;
  let pollTimer = null;
  let state = document.getElementById("run-state").textContent.trim();

  function setText(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  function detectorBar(name, info) {
    const container = document.getElementById("detector-progress");
    let row = container.querySelector(`[data-detector="${CSS.escape(name)}"]`);
    if (!row) {
      row = document.createElement("div");
      row.className = "detector-row";
      row.dataset.detector = name;
      row.innerHTML = '<span class="name"></span> <progress></progress> <span class="text"></span>';
      row.querySelector(".name").textContent = name;
      row.querySelector("progress").setAttribute("aria-label", `progress of ${name}`);
      container.appendChild(row);
    }
    const bar = row.querySelector("progress");
    bar.max = info.total || 1;
    bar.value = info.done || 0;
    const rate = info.pairs_per_s ? ` · ${info.pairs_per_s} pairs/s` : "";
    const eta = info.eta_s != null ? ` · ETA ${Math.round(info.eta_s)} s` : "";
    row.querySelector(".text").textContent = `${info.done}/${info.total}${rate}${eta} · ${info.stage || ""}`;
  }

  function setOverall(done, total) {
    const bar = document.getElementById("run-progress");
    bar.max = total || 1;
    bar.value = done || 0;
    setText("run-progress-text", `${done}/${total}`);
  }

  function applySnapshot(snap) {
    state = snap.state;
    const chip = document.getElementById("run-state");
    chip.textContent = snap.state;
    chip.className = `chip state-${snap.state}`;
    setOverall(snap.done, snap.total);
    const progress = snap.progress || {};
    setText("run-stage", progress.stage || "");
    for (const [name, info] of Object.entries(progress.detectors || {})) detectorBar(name, info);
    setText("run-error", snap.error || "");
    if (finished.has(snap.state)) root.dispatchEvent(new CustomEvent("run:finished", { detail: snap }));
  }

  function handle(event) {
    if (event.seq != null && event.seq <= lastSeq && event.type !== "snapshot") return;
    if (event.seq != null) lastSeq = Math.max(lastSeq, event.seq);
    if (event.type === "snapshot" || event.type === "state") {
      applySnapshot(event);
    } else if (event.type === "progress") {
      if (event.detector) detectorBar(event.detector, event);
      if (event.overall) setOverall(event.overall.done, event.overall.total);
      if (event.stage) setText("run-stage", event.stage);
    }
  }

  function poll() {
    fetch(statusUrl, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((snap) => { if (snap) applySnapshot(snap); })
      .catch(() => {});
  }

  function startPolling() {
    if (!pollTimer) pollTimer = setInterval(poll, 2000);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${wsPath}`);
    socket.onopen = () => { retries = 0; stopPolling(); setText("run-connection", "live"); };
    socket.onmessage = (msg) => handle(JSON.parse(msg.data));
    socket.onclose = () => {
      if (finished.has(state)) { setText("run-connection", "finished"); return; }
      setText("run-connection", "reconnecting… (polling meanwhile)");
      startPolling();
      retries += 1;
      setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(retries, 6)));
    };
    socket.onerror = () => socket.close();
  }

  connect();
})();
