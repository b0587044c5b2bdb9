// Live threshold on the run page: the slider asks the server for the leaderboard recomputed from
// the stored per-pair score histograms at that threshold (JSON) and updates the table cells, the
// thesis table, the per-category table and the PR points in place; the threshold goes into the
// URL and into every export link. Delegated, so it also works when the results section is replaced.
(function () {
  "use strict";
  let timer = null;
  let latest = 0;

  function text(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  function withThreshold(href, value, atRun) {
    const url = new URL(href, window.location.href);
    if (atRun) url.searchParams.delete("threshold");
    else url.searchParams.set("threshold", value);
    return url.pathname + url.search;
  }

  function updateCells(data) {
    const columns = new Map(data.columns.map((c) => [c.key, c]));
    for (const row of data.rows) {
      const tr = document.querySelector(`#leaderboard-table tr[data-detector="${CSS.escape(row.detector)}"]`);
      if (!tr) continue;
      // rank and rank group at this threshold (the rows keep their places)
      const rank = tr.querySelector("[data-rank]");
      if (rank && row.rank !== null && row.rank !== undefined) rank.textContent = String(row.rank);
      const group = tr.querySelector("[data-rank-group]");
      if (group && row.rank_group) group.textContent = `group ${row.rank_group}`;
      const threshold = tr.querySelector(".threshold-cell");
      if (threshold && row.threshold !== undefined) {  // what this row is cut at now, and why
        threshold.dataset.threshold = row.threshold;
        threshold.firstChild.textContent = text(row.threshold, 4);
        threshold.querySelector("small").textContent = row.threshold_source;
      }
      for (const td of tr.querySelectorAll("td[data-key]")) {
        const column = columns.get(td.dataset.key);
        const value = td.querySelector("[data-value]");
        if (!column || !value) continue;
        value.textContent = text(row[column.key], Number(value.dataset.digits || column.digits));
        const ci = td.querySelector("[data-ci]");
        const low = row[`${column.key}_ci_low`];
        if (ci) ci.textContent = low === null || low === undefined ? "" : `[${text(low, 3)}, ${text(row[`${column.key}_ci_high`], 3)}]`;
        const delta = td.querySelector(".delta");
        const diff = row[`${column.key}_delta_vs_baseline`];
        if (delta && diff !== undefined && diff !== null) {
          const verdict = Math.abs(diff) < 1e-9 ? "same" : (diff > 0) === column.higher_is_better ? "better" : "worse";
          delta.className = `delta ${verdict}`;
          delta.textContent = `${verdict === "better" ? "▲" : verdict === "worse" ? "▼" : ""} Δ ${diff >= 0 ? "+" : ""}${diff.toFixed(3)}`;
        }
      }
    }
    for (const record of data.thesis) {
      const cell = document.querySelector(`#thesis-summary tr[data-detector="${CSS.escape(record.detector)}"] [data-thesis-iou]`);
      if (cell) cell.textContent = text(record.iou, 3);
    }
    for (const row of data.categories.rows) {
      for (const c of row.cells) {
        const td = document.querySelector(`td[data-category="${CSS.escape(row.category)}"][data-detector="${CSS.escape(c.detector)}"]`);
        if (!td) continue;
        td.querySelector("[data-category-pooled]").textContent = text(c.pooled_iou, 3);
        td.querySelector("[data-category-mean]").textContent = text(c.mean_iou, 3);
      }
    }
    const points = document.getElementById("threshold-points");
    if (points) {
      points.textContent = data.points
        .map((p) => `${p.detector}: PR point (recall ${text(p.pr_point.recall, 3)}, precision ${text(p.pr_point.precision, 3)})`)
        .join(" · ");
    }
  }

  function showThreshold(form, record) {
    const note = form.querySelector("#threshold-note");
    const output = form.querySelector("#threshold-value");
    if (output) output.textContent = String(record.threshold);
    if (note) {
      const oracle = Object.entries(record.oracle_thresholds)
        .map(([name, t]) => `${name} ${text(t, 4)}`)
        .join(", ");
      const missing = record.not_recomputed.length ? `; at the run's threshold only: ${record.not_recomputed.join(", ")}` : "";
      note.textContent = `${record.source}${record.rounded_to_grid ? ` (asked ${record.requested}, rounded to the grid)` : ""}${missing} · oracle thresholds (tuned on these very pairs, an upper bound): ${oracle}`;
    }
    const value = String(record.threshold);
    const atRun = record.at_run_threshold;
    window.history.replaceState(null, "", withThreshold(window.location.href, value, atRun));
    for (const link of document.querySelectorAll("a[data-threshold-link], #leaderboard thead a")) {
      link.setAttribute("href", withThreshold(link.getAttribute("href"), value, atRun));
    }
  }

  async function recompute(form, value) {
    const ticket = ++latest;
    const params = new URLSearchParams(new FormData(form));
    params.set("threshold", value);
    const response = await fetch(`${form.dataset.url}?${params}`, { headers: { Accept: "application/json" } });
    if (ticket !== latest) return; // a newer position was asked for meanwhile
    if (!response.ok) {
      const note = form.querySelector("#threshold-note");
      if (note) note.textContent = await response.text();
      return;
    }
    const data = await response.json();
    updateCells(data);
    showThreshold(form, data.threshold);
    form.dataset.shown = String(data.threshold.threshold);
  }

  function schedule(form, value) {
    const output = form.querySelector("#threshold-value");
    if (output) output.textContent = value;
    clearTimeout(timer);
    timer = setTimeout(() => recompute(form, value), 150);
  }

  document.addEventListener("input", (event) => {
    const input = event.target;
    if (input instanceof HTMLInputElement && input.id === "threshold" && input.form) schedule(input.form, input.value);
  });
  document.addEventListener("click", (event) => {
    const button = event.target;
    if (!(button instanceof HTMLElement) || button.id !== "threshold-reset") return;
    const form = button.closest("form");
    const input = form.querySelector("#threshold");
    input.value = button.dataset.value;
    schedule(form, button.dataset.value);
  });
})();
