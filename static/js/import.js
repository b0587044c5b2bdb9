// Import of a staged upload: the form is posted in the background while a progress bar polls
// the server (`?progress=1`), then the page follows the answer's redirect (dataset or report).
(function () {
  "use strict";
  const form = document.getElementById("import-form");
  if (!form) return;
  const box = document.getElementById("import-progress");
  const bar = document.getElementById("import-progress-bar");
  const text = document.getElementById("import-progress-text");
  let timer = null;

  function show(progress) {
    if (progress.total) bar.max = progress.total;
    bar.value = progress.done || 0;
    const state = progress.state === "failed" ? " (failed)" : "";
    text.textContent = `${progress.done || 0}/${progress.total || bar.max} pairs${state}`;
  }

  function poll() {
    fetch(form.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((progress) => { if (progress) show(progress); })
      .catch(() => {})
      .finally(() => { timer = window.setTimeout(poll, 500); });
  }

  form.addEventListener("submit", (event) => {
    const submitter = event.submitter;
    if (!submitter || submitter.value !== "import") return; // discarding needs no progress bar
    event.preventDefault();
    const data = new FormData(form);
    data.append("action", "import");
    form.querySelectorAll("button").forEach((button) => { button.disabled = true; });
    box.hidden = false;
    poll();
    fetch(form.getAttribute("action") || location.href, { method: "POST", body: data, credentials: "same-origin" })
      // read the (redirected) page to its end before leaving: navigating away mid-body aborts the request
      .then((response) => response.text().then(() => { window.location.assign(response.url); }))
      .catch(() => { form.submit(); })
      .finally(() => { if (timer) window.clearTimeout(timer); });
  });
})();
