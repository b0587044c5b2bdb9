// Training page: loss and validation F1/IoU curves that grow live over /ws/training/<id>/
// (reconnecting, with polling of the status endpoint as fallback).
(function () {
  "use strict";
  const root = document.getElementById("training");
  if (!root) return;
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  const history = JSON.parse(document.getElementById("training-history").textContent || "[]");
  let state = root.dataset.initialState;
  let lastSeq = -1;
  let retries = 0;
  let pollTimer = null;

  const setText = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };

  function lineChart(id, series) {
    const canvas = document.getElementById(id);
    if (!canvas || !window.Chart) return null;
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: [],
        datasets: series.map(([label, colour, dash]) => ({ label, data: [], borderColor: colour, backgroundColor: colour, borderDash: dash, spanGaps: true })),
      },
      options: { maintainAspectRatio: false, animation: false, scales: { x: { title: { display: true, text: "epoch" } } } },
    });
  }
  const lossChart = lineChart("loss-chart", [["train loss", "#0072B2", []], ["val loss", "#E69F00", [6, 4]]]);
  const f1Chart = lineChart("f1-chart", [["val F1", "#009E73", []], ["val IoU", "#CC79A7", [6, 4]]]);

  function draw() {
    const epochs = history.map((h) => h.epoch);
    const fill = (chart, keys) => {
      if (!chart) return;
      chart.data.labels = epochs;
      keys.forEach((key, i) => { chart.data.datasets[i].data = history.map((h) => h[key]); });
      chart.update();
    };
    fill(lossChart, ["train_loss", "val_loss"]);
    fill(f1Chart, ["val_f1", "val_iou"]);
    const bar = document.getElementById("job-progress");
    if (bar) bar.value = history.length;
  }

  function applySnapshot(snap) {
    state = snap.state;
    const chip = document.getElementById("job-state");
    chip.textContent = state;
    chip.className = `chip state-${state}`;
    const progress = snap.progress || {};
    setText("job-stage", progress.stage || "");
    if (progress.epoch != null) setText("job-epoch", progress.epoch);
    if (Array.isArray(progress.history)) { history.length = 0; history.push(...progress.history); draw(); }
    setText("job-error", snap.error || "");
    if (snap.checkpoint) setText("job-checkpoint", `Checkpoint ${snap.checkpoint} ready: pick it as weights in a new experiment.`);
    if (finished.has(state)) { setText("job-eta", ""); stopPolling(); }
  }

  function handle(event) {
    if (event.seq != null && event.type !== "snapshot" && event.seq <= lastSeq) return;
    if (event.seq != null) lastSeq = Math.max(lastSeq, event.seq);
    if (event.type === "snapshot" || event.type === "state") return applySnapshot(event);
    if (event.stage) setText("job-stage", event.stage);
    if (event.epoch != null) setText("job-epoch", event.epoch);
    if (event.eta_s != null) setText("job-eta", `ETA ${Math.round(event.eta_s)} s`);
    if (event.stage === "epoch") {
      history.push({ epoch: event.epoch, train_loss: event.train_loss, val_loss: event.val_loss, val_f1: event.val_f1, val_iou: event.val_iou });
      draw();
    }
  }

  function poll() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null)).then((snap) => { if (snap) applySnapshot(snap); }).catch(() => {});
  }
  function startPolling() { if (!pollTimer && !finished.has(state)) pollTimer = setInterval(poll, 2000); }
  function stopPolling() { if (pollTimer) clearInterval(pollTimer); pollTimer = null; }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.wsUrl}`);
    socket.addEventListener("open", () => { retries = 0; stopPolling(); setText("job-connection", "live"); });
    socket.addEventListener("message", (msg) => handle(JSON.parse(msg.data)));
    socket.addEventListener("close", () => {
      if (finished.has(state)) { setText("job-connection", "finished"); return; }
      setText("job-connection", "reconnecting… (polling meanwhile)");
      startPolling();
      retries += 1;
      setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(retries, 6)));
    });
  }

  draw();
  if (finished.has(state)) setText("job-connection", "finished");
  else connect();
})();
