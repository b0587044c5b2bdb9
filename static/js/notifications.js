// Finished runs and training jobs, wherever the user is: a per-user WebSocket
// (/ws/notifications/) sends `finished` events; each shows an in-page toast (role=status, with a
// link) and, when the user allowed it with "Notify me", a system notification.
(function () {
  "use strict";
  const button = document.getElementById("notify-me");
  const toasts = document.getElementById("toasts");
  if (!toasts) return;
  const supported = "Notification" in window;

  function showButton() {
    if (!button) return;
    button.hidden = !supported || Notification.permission !== "default";
  }
  if (button) {
    button.addEventListener("click", () => {
      Promise.resolve(Notification.requestPermission()).then(showButton, showButton);
    });
  }
  showButton();

  function toast(event) {
    const item = document.createElement("div");
    item.className = `toast state-${event.state}`;
    item.setAttribute("role", "status");
    const link = document.createElement("a");
    link.href = event.url;
    link.textContent = event.title;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.setAttribute("aria-label", "dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => item.remove());
    item.append(link, " ", close);
    toasts.append(item);
    setTimeout(() => item.remove(), 30000);
  }

  function notify(event) {
    toast(event);
    if (!supported || Notification.permission !== "granted") return;
    try {
      const n = new Notification("diffplatform", { body: event.title, tag: `${event.kind}-${event.id}` });
      n.onclick = () => { window.focus(); location.href = event.url; };
    } catch (error) {
      // some browsers only allow notifications from a service worker; the toast is shown anyway
    }
  }

  let delay = 1000;
  function connect() {
    // A page rewritten in place (upload_progress.js) runs this script again: one socket per window.
    const previous = window.__notificationSocket;
    if (previous) { previous.replaced = true; previous.close(); }
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/notifications/`);
    window.__notificationSocket = socket;
    socket.addEventListener("open", () => { delay = 1000; toasts.dataset.socket = "open"; });
    socket.addEventListener("message", (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "finished") notify(event);
    });
    socket.addEventListener("close", (closed) => {
      toasts.dataset.socket = "closed";
      if (closed.code === 4401 || socket.replaced) return;  // signed out, or a newer socket took over
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
