// The image page's workspace: "Full page" fills the window with the image, its readout and the tools
// beside it (OpenSeadragon's own full-page mode would hide them); the button or Escape leaves it.
(function () {
  "use strict";

  function start() {
    var workspace = document.getElementById("workspace");
    var button = document.getElementById("full-page");
    if (!workspace || !button) {
      return;
    }
    function set(full) {
      workspace.classList.toggle("full", full);
      document.body.classList.toggle("workspace-full", full);
      button.setAttribute("aria-pressed", full ? "true" : "false");
      button.textContent = full ? "Leave full page" : "Full page";
    }
    button.addEventListener("click", function () {
      set(!workspace.classList.contains("full"));
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && workspace.classList.contains("full")) {
        set(false);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
