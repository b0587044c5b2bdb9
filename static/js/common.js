// Shared by every page: selects marked data-autosubmit submit their (GET) form on change, so
// the page state lands in the URL. Delegated, so it also works for fragments loaded later.
(function () {
  "use strict";
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      if (target.form.requestSubmit) target.form.requestSubmit();
      else target.form.submit();
    }
  });
})();
