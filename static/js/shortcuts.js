// "?" opens an overlay listing the keyboard shortcuts of this page (and the ones every page has);
// "?" again or Esc closes it. The overlay is a modal <dialog>, so focus stays inside while open.
(function () {
  "use strict";
  const dialog = document.getElementById("shortcuts");
  if (!dialog || typeof dialog.showModal !== "function") return;
  let opener = null;

  function typing(target) {
    const tag = (target.tagName || "").toLowerCase();
    return ["input", "select", "textarea"].includes(tag) || target.isContentEditable;
  }

  function toggle() {
    if (dialog.open) { dialog.close(); return; }
    opener = document.activeElement;
    dialog.showModal();
  }

  document.addEventListener("keydown", (event) => {
    if (event.key !== "?" || event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    event.preventDefault();
    toggle();
  });
  dialog.addEventListener("close", () => { if (opener && opener.focus) opener.focus(); });
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  // which page-specific sections apply: each names the element that marks its page
  for (const section of dialog.querySelectorAll("[data-when]")) {
    section.hidden = !document.querySelector(section.dataset.when);
  }
  const trigger = document.getElementById("shortcuts-open");
  if (trigger) trigger.addEventListener("click", toggle);
})();
