// Dashboard: keeps the run status chips current while any run is active.
(function () {
  "use strict";
  const rows = document.querySelectorAll("tr[data-run-id]");
  if (!rows.length) return;
  const active = new Set(["queued", "running"]);
  function refresh() {
    fetch("/runs/status/", { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : { runs: [] }))
      .then((data) => {
        let anyActive = false;
        for (const run of data.runs) {
          const row = document.querySelector(`tr[data-run-id="${run.id}"]`);
          if (!row) continue;
          const chip = row.querySelector("[data-live-state]");
          chip.textContent = run.state;
          chip.className = `chip state-${run.state}`;
          row.querySelector("[data-live-progress]").textContent = `${run.done}/${run.total}`;
          anyActive = anyActive || active.has(run.state);
        }
        if (anyActive) setTimeout(refresh, 2000);
      })
      .catch(() => setTimeout(refresh, 5000));
  }
  refresh();
})();
