// Small behaviours of every page, wired by data attributes instead of inline handlers (the
// Content-Security-Policy runs no inline script). Listeners sit on the document, so fragments that
// htmx swaps in later work too.
//   data-select-on-focus          the field's text is selected when it gets the focus
//   data-copy="ID"                a button that copies the value of the field #ID to the clipboard
//   data-select-all="SELECTOR"    a checkbox that checks or clears every checkbox matching SELECTOR
//   data-needs-checked="SELECTOR" a button disabled while no checkbox matching SELECTOR is checked (served
//                                 enabled, so that it works without JavaScript; the server then says why)
(function () {
  "use strict";

  function updateNeedsChecked() {
    document.querySelectorAll("[data-needs-checked]").forEach(function (button) {
      var boxes = document.querySelectorAll(button.getAttribute("data-needs-checked"));
      var any = Array.prototype.some.call(boxes, function (box) { return box.checked; });
      button.disabled = !any;
      button.title = any ? "" : "Select images first";
    });
  }
  document.addEventListener("DOMContentLoaded", updateNeedsChecked);
  document.addEventListener("htmx:afterSettle", updateNeedsChecked);

  document.addEventListener("focusin", function (event) {
    var field = event.target;
    if (field instanceof HTMLInputElement && field.hasAttribute("data-select-on-focus")) {
      field.select();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field || !navigator.clipboard) return;
    navigator.clipboard.writeText(field.value).then(function () {
      button.textContent = "Copied";
    }, function () {
      field.select();  // no clipboard access: selected, for Ctrl-C
      button.textContent = "Press Ctrl-C to copy";
    });
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.hasAttribute("data-select-all")) return;
    document.querySelectorAll(box.getAttribute("data-select-all")).forEach(function (other) {
      other.checked = box.checked;
    });
  });

  document.addEventListener("change", updateNeedsChecked);
})();
