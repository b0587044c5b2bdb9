// Upload progress for plain multipart forms marked `data-upload-progress`: the form is sent with
// XMLHttpRequest so the bytes sent can be shown in a <progress>; the page the server answers with
// (the redirect target, or the form again with its errors) then replaces this one, as a normal
// submit would. Without JavaScript the form submits as usual.
(function () {
  "use strict";
  for (const form of document.querySelectorAll("form[data-upload-progress]")) {
    const box = document.createElement("p");
    box.className = "upload-progress";
    box.hidden = true;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "upload progress");
    const text = document.createElement("span");
    text.setAttribute("aria-live", "polite");
    box.append(bar, " ", text);
    form.append(box);

    form.addEventListener("submit", (event) => {
      if (!window.FormData || !window.XMLHttpRequest) return;
      event.preventDefault();
      const xhr = new XMLHttpRequest();
      const buttons = form.querySelectorAll("button[type=submit]");
      buttons.forEach((b) => { b.disabled = true; });
      box.hidden = false;
      text.textContent = "uploading…";
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        bar.value = Math.round((100 * e.loaded) / e.total);
        const mb = (n) => (n / 1048576).toFixed(1);
        text.textContent = `${bar.value}% (${mb(e.loaded)} of ${mb(e.total)} MB)`;
      });
      xhr.upload.addEventListener("load", () => { text.textContent = "uploaded; the server is checking the files…"; });
      xhr.addEventListener("load", () => {
        if (xhr.responseURL) history.replaceState(null, "", xhr.responseURL);
        document.open();
        document.write(xhr.responseText);
        document.close();
      });
      xhr.addEventListener("error", () => {
        buttons.forEach((b) => { b.disabled = false; });
        text.textContent = "The upload failed (connection lost); try again.";
      });
      xhr.open("POST", form.action || location.href);
      xhr.send(new FormData(form));
    });
  }
})();
