// Pair detail: every panel in a [data-sync-group] shares one zoom and pan (wheel zooms about the
// pointer, drag pans, double-click or "Reset zoom" resets); the heatmap overlay is cropped to B
// (the stored heatmap carries a colour bar on its right) and its opacity follows the slider;
// arrow keys go to the previous / next pair of the gallery ordering.
(function () {
  "use strict";
  const view = { scale: 1, x: 0, y: 0 };
  const groups = [...document.querySelectorAll("[data-sync-group]")];
  const viewports = [...document.querySelectorAll("[data-viewport]")];

  function sizeViewports() {
    for (const group of groups) {
      const ratio = Number(group.dataset.height) / Number(group.dataset.width) || 1;
      for (const vp of group.querySelectorAll("[data-viewport]")) vp.style.height = `${vp.clientWidth * ratio}px`;
    }
  }

  function apply() {
    for (const layer of document.querySelectorAll("[data-layer]")) {
      layer.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    }
  }

  function clamp() {
    view.scale = Math.min(32, Math.max(1, view.scale));
    const vp = viewports[0];
    if (!vp) return;
    const w = vp.clientWidth, h = vp.clientHeight;
    view.x = Math.min(0, Math.max(w - w * view.scale, view.x));
    view.y = Math.min(0, Math.max(h - h * view.scale, view.y));
  }

  function reset() { view.scale = 1; view.x = 0; view.y = 0; apply(); }

  for (const vp of viewports) {
    vp.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = vp.getBoundingClientRect();
      const px = event.clientX - rect.left, py = event.clientY - rect.top;
      const factor = event.deltaY < 0 ? 1.25 : 0.8;
      const scale = Math.min(32, Math.max(1, view.scale * factor));
      view.x = px - ((px - view.x) * scale) / view.scale;
      view.y = py - ((py - view.y) * scale) / view.scale;
      view.scale = scale;
      clamp(); apply();
    }, { passive: false });
    let drag = null;
    vp.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y };
      vp.setPointerCapture(event.pointerId);
      vp.classList.add("dragging");
    });
    vp.addEventListener("pointermove", (event) => {
      if (!drag) return;
      view.x = drag.vx + event.clientX - drag.x;
      view.y = drag.vy + event.clientY - drag.y;
      clamp(); apply();
    });
    const end = () => { drag = null; vp.classList.remove("dragging"); };
    vp.addEventListener("pointerup", end);
    vp.addEventListener("pointercancel", end);
    vp.addEventListener("dblclick", reset);
  }

  // The heatmap PNG is B's width plus a colour bar: show only B's part, scaled to the panel.
  const bWidth = groups.length ? Number(groups[0].dataset.width) : 0;
  function cropHeat(img) {
    if (img.naturalWidth && bWidth) img.style.width = `${(100 * img.naturalWidth) / bWidth}%`;
  }
  for (const img of document.querySelectorAll("img[data-heat]")) {
    if (img.complete) cropHeat(img);
    else img.addEventListener("load", () => cropHeat(img));
  }

  const opacity = document.getElementById("opacity");
  const heatmaps = document.getElementById("heatmaps");
  function setOpacity() {
    if (!opacity || !heatmaps) return;
    heatmaps.style.setProperty("--heat-opacity", String(opacity.value / 100));
    opacity.setAttribute("aria-valuetext", `${opacity.value}%`);
  }
  if (opacity) opacity.addEventListener("input", setOpacity);
  const resetButton = document.getElementById("zoom-reset");
  if (resetButton) resetButton.addEventListener("click", reset);

  document.addEventListener("keydown", (event) => {
    const tag = (event.target.tagName || "").toLowerCase();
    if (["input", "select", "textarea", "img-comparison-slider"].includes(tag) || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
    const link = target && document.querySelector(`[data-nav="${target}"]`);
    if (link) { event.preventDefault(); location.href = link.href; }
  });

  window.addEventListener("resize", () => { sizeViewports(); clamp(); apply(); });
  sizeViewports();
  setOpacity();
  apply();
})();
