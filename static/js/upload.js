// Dataset upload: drag and drop many files (or folders, or one zip), preview how they pair up by
// name, let the user pair the files whose names say nothing, then submit the ordinary form with
// the files renamed to <name>_A / _B / _label so the server matches them the same way.
(function () {
  "use strict";
  const form = document.getElementById("bulk-upload");
  if (!form) return;
  const input = document.getElementById("id_files");
  const zone = document.getElementById("dropzone");
  const preview = document.getElementById("upload-preview");
  const IMAGE = /\.(png|jpe?g|tiff?|bmp|webp)$/i;
  const SUFFIXES = [["_a", "a"], ["_before", "a"], ["-a", "a"], ["_b", "b"], ["_after", "b"], ["-b", "b"],
    ["_label", "label"], ["_mask", "label"], ["-label", "label"]];
  const FOLDERS = { a: "a", b: "b", label: "label" };
  let entries = []; // {file, path, role, name}

  function guess(path) {
    const parts = path.split("/");
    const file = parts[parts.length - 1];
    const dot = file.lastIndexOf(".");
    const stem = dot > 0 ? file.slice(0, dot) : file;
    if (!IMAGE.test(file)) return { role: "extra", name: "" };
    if (parts.length >= 2 && FOLDERS[parts[parts.length - 2].toLowerCase()]) {
      return { role: FOLDERS[parts[parts.length - 2].toLowerCase()], name: stem };
    }
    for (const [suffix, role] of SUFFIXES) {
      if (stem.toLowerCase().endsWith(suffix)) return { role, name: stem.slice(0, -suffix.length) };
    }
    return { role: "", name: stem };
  }

  function add(file, path) {
    if (entries.some((e) => e.path === path && e.file.size === file.size)) return;
    entries.push({ file, path, ...guess(path) });
  }

  function extension(file) {
    const dot = file.name.lastIndexOf(".");
    return dot > 0 ? file.name.slice(dot) : "";
  }

  function renamed(entry) {
    // Zips and extras (categories.csv) go as they are; folder layouts with split lists: use a zip.
    if (entry.role === "extra") return entry.file;
    const suffix = { a: "_A", b: "_B", label: "_label" }[entry.role];
    return new File([entry.file], `${entry.name}${suffix}${extension(entry.file)}`, { type: entry.file.type });
  }

  function sync() {
    const transfer = new DataTransfer();
    for (const entry of entries) if (entry.role) transfer.items.add(renamed(entry));
    input.files = transfer.files;
  }

  function groups() {
    const byName = new Map();
    for (const e of entries) {
      if (e.role === "extra" || !e.role) continue;
      if (!byName.has(e.name)) byName.set(e.name, {});
      byName.get(e.name)[e.role] = e;
    }
    return byName;
  }

  function thumb(entry) {
    if (!entry) return document.createTextNode("—");
    const img = document.createElement("img");
    img.alt = entry.file.name;
    img.src = URL.createObjectURL(entry.file);
    return img;
  }

  function render() {
    preview.replaceChildren();
    if (!entries.length) return;
    const zips = entries.filter((e) => e.file.name.toLowerCase().endsWith(".zip"));
    const summary = document.createElement("p");
    const byName = groups();
    const complete = [...byName.values()].filter((g) => g.a && g.b).length;
    summary.textContent = zips.length
      ? `${zips.length} zip file(s): the server unpacks and checks it.`
      : `${entries.length} file(s): ${complete} complete pair(s) recognised by name.`;
    preview.appendChild(summary);
    if (byName.size) {
      const table = document.createElement("table");
      table.className = "table preview-table";
      table.innerHTML = "<thead><tr><th>Pair</th><th>A</th><th>B</th><th>Label</th><th>Status</th></tr></thead><tbody></tbody>";
      for (const [name, g] of byName) {
        const row = table.tBodies[0].insertRow();
        row.insertCell().textContent = name;
        for (const role of ["a", "b", "label"]) row.insertCell().appendChild(thumb(g[role]));
        row.insertCell().textContent = g.a && g.b ? (g.label ? "ok" : "ok, no label") : "incomplete: needs A and B";
      }
      preview.appendChild(table);
    }
    const unknown = entries.filter((e) => !e.role);
    if (unknown.length) {
      const box = document.createElement("fieldset");
      box.innerHTML = "<legend>Pair these files by hand</legend><p class='muted'>Their names do not say A, B or label.</p>";
      unknown.forEach((entry) => {
        const line = document.createElement("p");
        const label = document.createElement("span");
        label.textContent = `${entry.path} → pair `;
        const name = document.createElement("input");
        name.type = "text"; name.value = entry.name; name.size = 14; name.setAttribute("aria-label", `pair name for ${entry.path}`);
        const role = document.createElement("select");
        role.setAttribute("aria-label", `role of ${entry.path}`);
        for (const [value, text] of [["", "choose role…"], ["a", "A (before)"], ["b", "B (after)"], ["label", "label"]]) {
          role.add(new Option(text, value));
        }
        role.addEventListener("change", () => { entry.role = role.value; entry.name = name.value.trim() || entry.name; sync(); render(); });
        name.addEventListener("change", () => { entry.name = name.value.trim(); });
        line.append(label, name, document.createTextNode(" as "), role);
        box.appendChild(line);
      });
      preview.appendChild(box);
    }
    sync();
  }

  function readEntry(entry, path) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((file) => { add(file, path + file.name); resolve(); }, () => resolve());
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const next = () => reader.readEntries((batch) => {
          if (!batch.length) {
            Promise.all(all.map((child) => readEntry(child, `${path}${entry.name}/`))).then(() => resolve());
          } else { all.push(...batch); next(); }
        }, () => resolve());
        next();
      } else resolve();
    });
  }

  input.addEventListener("change", () => {
    if (input.dataset.syncing) return;
    entries = [];
    for (const file of input.files) add(file, file.webkitRelativePath || file.name);
    input.dataset.syncing = "1";
    render();
    delete input.dataset.syncing;
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const items = [...(event.dataTransfer.items || [])].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry());
    if (items.length && items.every(Boolean)) {
      Promise.all(items.map((entry) => readEntry(entry, ""))).then(render);
    } else {
      for (const file of event.dataTransfer.files) add(file, file.name);
      render();
    }
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
})();
