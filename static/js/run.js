// Live run page: follows /ws/runs/<id>/ (events ordered by seq), reconnects by itself with
// back-off and polls the status endpoint while the socket is down. When the run finishes, the
// results section (leaderboard, charts) is fetched and shown without reloading the page.
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const finished = new Set(["succeeded", "partial", "failed", "cancelled"]);
  const rates = new Map(); // detector -> {rate, left}
  let lastSeq = -1;
  let retries = 0;
  let pollTimer = null;
  let socket = null;
  let state = root.dataset.initialState;
  let resultsLoaded = finished.has(state);
  let lastStage = "";

  function setText(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  function log(text) {
    const list = document.getElementById("run-log");
    if (!list) return;
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    list.appendChild(item);
    while (list.children.length > 30) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  function formatEta(seconds) {
    if (seconds == null || !isFinite(seconds)) return "";
    if (seconds < 90) return `ETA ${Math.round(seconds)} s`;
    return `ETA ${Math.round(seconds / 60)} min`;
  }

  function detectorBar(name, info) {
    const container = document.getElementById("detector-progress");
    let row = container.querySelector(`[data-detector="${CSS.escape(name)}"]`);
    if (!row) {
      row = document.createElement("div");
      row.className = "detector-row";
      row.dataset.detector = name;
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      const bar = document.createElement("progress");
      bar.setAttribute("aria-label", `progress of ${name}`);
      const text = document.createElement("span");
      text.className = "text";
      row.append(label, bar, text);
      container.appendChild(row);
    }
    const bar = row.querySelector("progress");
    bar.max = info.total || 1;
    bar.value = info.done || 0;
    const rate = info.pairs_per_s ? ` · ${info.pairs_per_s.toFixed(2)} pairs/s` : "";
    const eta = info.eta_s != null && info.done < info.total ? ` · ${formatEta(info.eta_s)}` : "";
    const why = info.failed ? `: ${info.failed}` : "";
    row.querySelector(".text").textContent = `${info.done}/${info.total}${rate}${eta} · ${info.stage || ""}${why}`;
    row.classList.toggle("failed", Boolean(info.failed));
    rates.set(name, { rate: info.pairs_per_s || 0, left: Math.max(0, (info.total || 0) - (info.done || 0)) });
    if (info.stage === "done" && !row.dataset.logged) { row.dataset.logged = "1"; log(`${name} done`); }
    if (info.failed && row.dataset.logged !== "failed") { row.dataset.logged = "failed"; log(`${name} failed: ${info.failed}`); }
    updateRate();
  }

  function updateRate() {
    let rate = 0;
    let eta = 0;
    for (const r of rates.values()) {
      rate += r.rate;
      if (r.rate > 0) eta = Math.max(eta, r.left / r.rate);
    }
    setText("run-rate", rate > 0 && !finished.has(state) ? ` · ${rate.toFixed(2)} pairs/s` : "");
    setText("run-eta", eta > 0 && !finished.has(state) ? ` · ${formatEta(eta)}` : "");
  }

  function setOverall(done, total) {
    const bar = document.getElementById("run-progress");
    bar.max = total || 1;
    bar.value = done || 0;
    setText("run-progress-text", `${done}/${total}`);
    setText("run-percent", total ? `${Math.round((100 * (done || 0)) / total)}%` : "");
  }

  function setStage(stage) {
    if (!stage || stage === lastStage) return;
    lastStage = stage;
    setText("run-stage", stage);
    log(`stage: ${stage}`);
  }

  function showActions() {
    const show = (id, on) => { const el = document.getElementById(id); if (el) el.hidden = !on; };
    show("cancel-form", !finished.has(state));
    show("retry-form", state === "partial" || state === "failed" || state === "cancelled");
  }

  function loadResults() {
    if (resultsLoaded) return;
    resultsLoaded = true;
    fetch(root.dataset.resultsUrl + location.search, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`results: HTTP ${r.status}`))))
      .then((html) => {
        const target = document.getElementById("run-results");
        target.innerHTML = html;
        if (window.DiffLeaderboard) window.DiffLeaderboard.init(target);
        log("results loaded");
      })
      .catch((error) => { resultsLoaded = false; log(`could not load the results (${error.message}); reload the page`); });
  }

  function applySnapshot(snap) {
    const previous = state;
    state = snap.state;
    const chip = document.getElementById("run-state");
    chip.textContent = snap.state;
    chip.className = `chip state-${snap.state}`;
    if (previous !== state) log(`state: ${state}`);
    setOverall(snap.done, snap.total);
    const progress = snap.progress || {};
    setStage(progress.stage || "");
    for (const [name, info] of Object.entries(progress.detectors || {})) detectorBar(name, info);
    setText("run-error", snap.error || "");
    showActions();
    updateRate();
    if (finished.has(state)) {
      if (state === "succeeded") setOverall(snap.total, snap.total);
      stopPolling();
      if (socket) socket.close(); // a finished run sends nothing more; retry reloads the page
      loadResults();
      root.dispatchEvent(new CustomEvent("run:finished", { detail: snap }));
    }
  }

  function handle(event) {
    if (finished.has(state) && event.type !== "snapshot") return;
    if (event.seq != null && event.type !== "snapshot" && event.seq <= lastSeq) return;
    if (event.seq != null) lastSeq = Math.max(lastSeq, event.seq);
    if (event.type === "snapshot" || event.type === "state") {
      applySnapshot(event);
    } else if (event.type === "progress") {
      if (event.detector) detectorBar(event.detector, event);
      if (event.overall) setOverall(event.overall.done, event.overall.total);
      if (event.stage === "aligning") setText("run-stage", `aligning ${event.aligned}/${event.pairs}`);
      else if (event.stage && event.stage !== "done") setStage(event.stage);
    }
  }

  function poll() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((snap) => { if (snap) applySnapshot(snap); })
      .catch(() => {});
  }

  function startPolling() {
    if (!pollTimer && !finished.has(state)) pollTimer = setInterval(poll, 2000);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${root.dataset.wsUrl}`);
    socket.addEventListener("open", () => { retries = 0; stopPolling(); setText("run-connection", "live"); });
    socket.addEventListener("message", (msg) => handle(JSON.parse(msg.data)));
    socket.addEventListener("close", () => {
      if (finished.has(state)) { setText("run-connection", "finished"); return; }
      setText("run-connection", "reconnecting… (polling meanwhile)");
      startPolling();
      retries += 1;
      setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(retries, 6)));
    });
  }

  showActions();
  setOverall(Number(document.getElementById("run-progress").value), Number(document.getElementById("run-progress").max));
  if (finished.has(state)) {
    setText("run-connection", "finished");
    poll(); // per-detector bars from the stored progress
  } else {
    connect();
  }
})();
