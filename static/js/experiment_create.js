// New experiment: the estimated cost of each chosen detector and of the whole run, from the
// catalogue's CPU time per 256x256 pair, the dataset's pair count and each detector's input size
// (its own, or the override).
(function () {
  "use strict";
  const form = document.getElementById("experiment-form");
  const dataEl = document.getElementById("cost-data");
  if (!form || !dataEl) return;
  const data = JSON.parse(dataEl.textContent);

  function human(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
    return `${(ms / 60000).toFixed(1)} min`;
  }

  // A detector unavailable with weights "auto" (nothing to load) can be chosen only with explicit weights.
  function syncUnavailable() {
    for (const row of form.querySelectorAll("tr[data-unavailable]")) {
      const box = row.querySelector("input[type=checkbox]");
      const weights = row.querySelector("select");
      const auto = !weights || (weights.value || "auto") === "auto";
      box.disabled = auto;
      if (auto) box.checked = false;
    }
  }

  function update() {
    syncUnavailable();
    const datasetSelect = form.querySelector("[name=dataset]");
    const pairs = datasetSelect ? data.datasets[datasetSelect.value] || 0 : 0;
    const override = Number(form.querySelector("[name=input_size]").value) || 0;
    let total = 0;
    for (const row of form.querySelectorAll("tr[data-detector]")) {
      const name = row.dataset.detector;
      const own = data.sizes[name];
      const size = own ? override || own : 256; // classical detectors run at B's size: no scaling known
      const ms = (data.detectors[name] || 0) * pairs * (size / 256) ** 2;
      const checked = row.querySelector("input[type=checkbox]").checked;
      row.querySelector("[data-cost-cell]").textContent = `${human(ms)} (${pairs} pairs)`;
      row.classList.toggle("muted", !checked);
      if (checked) total += ms;
    }
    document.getElementById("cost-total").textContent = total ? human(total) : "—";
  }

  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
})();
