// Pair gallery: keyboard navigation (arrows or j/k to move, Enter opens the pair).
(function () {
  "use strict";
  const links = [...document.querySelectorAll("[data-gallery-item]")];
  if (!links.length) return;
  let index = -1;

  function select(next) {
    index = Math.max(0, Math.min(links.length - 1, next));
    links.forEach((link, i) => link.closest(".gallery-item").classList.toggle("current", i === index));
    links[index].focus();
  }

  document.addEventListener("keydown", (event) => {
    const tag = (event.target.tagName || "").toLowerCase();
    if (["input", "select", "textarea"].includes(tag) || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "ArrowRight" || event.key === "j") { event.preventDefault(); select(index + 1); }
    else if (event.key === "ArrowLeft" || event.key === "k") { event.preventDefault(); select(index - 1); }
  });
  links.forEach((link, i) => link.addEventListener("focus", () => { index = i; }));
})();
