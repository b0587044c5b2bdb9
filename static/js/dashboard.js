// Dashboard: keeps the run and training status chips current while anything is active.
(function () {
  "use strict";
  const rows = document.querySelectorAll("[data-run-id], [data-training-id]");
  if (!rows.length) return;
  const active = new Set(["queued", "running"]);

  function setChip(el, state) {
    const chip = el.querySelector("[data-live-state]");
    if (!chip) return;
    chip.textContent = state;
    chip.className = `chip state-${state}`;
  }

  function refresh() {
    fetch("/runs/status/", { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : { runs: [], training: [] }))
      .then((data) => {
        let anyActive = false;
        for (const run of data.runs || []) {
          const row = document.querySelector(`[data-run-id="${run.id}"]`);
          if (!row) continue;
          setChip(row, run.state);
          const progress = row.querySelector("[data-live-progress]");
          if (progress) progress.textContent = `${run.done}/${run.total}`;
          anyActive = anyActive || active.has(run.state);
        }
        for (const job of data.training || []) {
          const row = document.querySelector(`[data-training-id="${job.id}"]`);
          if (!row) continue;
          setChip(row, job.state);
          anyActive = anyActive || active.has(job.state);
        }
        if (anyActive) setTimeout(refresh, 2000);
      })
      .catch(() => setTimeout(refresh, 5000));
  }
  refresh();
})();
