// The image page: OpenSeadragon on the image's Deep Zoom pyramid, and the pixel under the cursor.
(function () {
  "use strict";

  function start() {
    var element = document.getElementById("viewer");
    if (!element || typeof OpenSeadragon === "undefined") { return; }
    var height = Number(element.dataset.height);
    var isFits = element.dataset.fits === "true";
    var viewer = OpenSeadragon({
      element: element,
      tileSources: element.dataset.dzi,
      prefixUrl: element.dataset.prefix,
      showNavigator: true,
      maxZoomPixelRatio: 8,
      crossOriginPolicy: false,
      gestureSettingsMouse: { clickToZoom: false }
    });
    window.imagexViewer = viewer;
    var readout = document.getElementById("readout");
    var tracker = new OpenSeadragon.MouseTracker({
      element: viewer.container,
      moveHandler: function (event) {
        if (!viewer.world.getItemCount()) { return; }
        var point = viewer.viewport.pointFromPixel(event.position);
        var pixel = viewer.world.getItemAt(0).viewportToImageCoordinates(point);
        var x = Math.floor(pixel.x), y = Math.floor(pixel.y);
        if (x < 0 || y < 0 || x >= Number(element.dataset.width) || y >= height) {
          readout.textContent = "\u00a0";
          return;
        }
        // FITS counts pixels from 1 at the bottom-left; the display shows the bottom row last.
        readout.textContent = isFits ? "x " + (x + 1) + ", y " + (height - y) : "x " + x + ", y " + y;
      }
    });
    tracker.setTracking(true);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
