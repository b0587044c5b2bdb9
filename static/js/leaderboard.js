// Leaderboard charts: IoU against latency (marker size = peak memory, Pareto front marked) and
// pooled precision-recall curves. Data comes from the json_script #chart-data; colours are the
// Okabe-Ito colours the server assigned per detector. `init(root)` may be called again after the
// results section is replaced (live run page).
(function () {
  "use strict";
  const charts = [];

  function radius(memory, maxMemory) {
    if (!memory || !maxMemory) return 6;
    return 5 + 15 * Math.sqrt(memory / maxMemory);
  }

  function scatter(canvas, points) {
    const maxMemory = Math.max(0, ...points.map((p) => p.memory || 0));
    const front = points.filter((p) => p.pareto).sort((a, b) => a.latency - b.latency);
    const datasets = points.map((p) => ({
      label: p.detector,
      data: [{ x: p.latency, y: p.iou, r: radius(p.memory, maxMemory), memory: p.memory, kind: p.iou_kind }],
      backgroundColor: `${p.colour}b3`,
      borderColor: p.pareto ? "#000000" : p.colour,
      borderWidth: p.pareto ? 2 : 1,
    }));
    datasets.push({
      type: "line",
      label: "Pareto front",
      data: front.map((p) => ({ x: p.latency, y: p.iou })),
      borderColor: "#000000",
      borderDash: [6, 4],
      borderWidth: 1,
      pointRadius: 0,
      fill: false,
    });
    return new window.Chart(canvas, {
      type: "bubble",
      data: { datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: points.every((p) => p.latency > 0)
            ? { type: "logarithmic", title: { display: true, text: "latency p50 (ms per pair, log scale)" } }
            : { title: { display: true, text: "latency p50 (ms per pair)" } },
          y: { title: { display: true, text: "IoU (pooled; per-pair mean without pooled)" }, suggestedMin: 0, suggestedMax: 1 },
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: (ctx) => {
                const d = ctx.raw;
                if (ctx.dataset.type === "line") return "Pareto front";
                const memory = d.memory != null ? `, ${d.memory.toFixed(0)} MB` : "";
                return `${ctx.dataset.label}: IoU ${d.y.toFixed(3)} (${d.kind}), ${d.x.toFixed(1)} ms${memory}`;
              },
            },
          },
        },
      },
    });
  }

  function prCurves(canvas, curves) {
    return new window.Chart(canvas, {
      type: "scatter",
      data: {
        datasets: curves.map((c) => ({
          label: c.detector,
          data: c.recall.map((r, i) => ({ x: r, y: c.precision[i] })),
          borderColor: c.colour,
          backgroundColor: c.colour,
          showLine: true,
          pointRadius: 0,
          borderWidth: 2,
        })),
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { min: 0, max: 1, title: { display: true, text: "recall" } },
          y: { min: 0, max: 1, title: { display: true, text: "precision" } },
        },
      },
    });
  }

  function init(root) {
    const scope = root || document;
    while (charts.length) charts.pop().destroy();
    const script = scope.querySelector("#chart-data");
    if (!script || !window.Chart) return;
    const data = JSON.parse(script.textContent);
    const scatterCanvas = scope.querySelector("#scatter-chart");
    if (scatterCanvas && data.scatter.length) charts.push(scatter(scatterCanvas, data.scatter));
    const prCanvas = scope.querySelector("#pr-chart");
    if (prCanvas && data.pr_curves.length) charts.push(prCurves(prCanvas, data.pr_curves));
  }

  window.DiffLeaderboard = { init };
  document.addEventListener("DOMContentLoaded", () => init(document));
})();
