// The image page: OpenSeadragon on the image's Deep Zoom pyramid; under the cursor the pixel (FITS
// convention), its value and its sky position, or on a map its longitude/latitude and projected x/y
// (sky.js); a scale bar and compass; "go to RA/Dec"; and the
// view (centre x, y in FITS pixels and zoom in screen pixels per image pixel) kept in the URL.
// Everything shown is built with textContent: header text never becomes markup.
(function () {
  "use strict";

  var VIEW_PARAMS = ["x", "y", "zoom"];

  function formatValue(value) {
    if (value === null || value === undefined || typeof value !== "number" || !isFinite(value)) { return "\u2014"; }
    if (Number.isInteger(value)) { return String(value); }
    var magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e7) ? value.toExponential(5) : String(Number(value.toPrecision(7)));
  }

  // Pages that embed the viewer may leave out any of the readout's elements.
  function setText(element, text) {
    if (element) { element.textContent = text; }
  }

  // Answers about one pixel from the server, one request in flight and the latest position wins: an answer
  // is shown only if no newer position (or leaving the image) came after the one it answers. `address(x, y)`
  // is the pixel's URL (null: no such requests); `show` gets the answer, or null when there is none
  // (outside a pyramid, a refused link, no server).
  function PixelReader(address, show) {
    this.address = address;
    this.show = show;
    this.busy = false;
    this.wanted = null;
    this.generation = 0;
    this.missing = !address;
  }

  PixelReader.prototype.ask = function (x, y) {
    this.generation += 1;
    if (this.missing) { this.show(null); return; }
    // until this pixel's answer arrives, nothing is shown beside its x/y (never the previous pixel's)
    this.show(undefined);
    this.wanted = [x, y];
    if (!this.busy) { this.next(); }
  };

  PixelReader.prototype.cancel = function () {
    this.generation += 1;
    this.wanted = null;
  };

  PixelReader.prototype.next = function () {
    var self = this, wanted = this.wanted, generation = this.generation;
    if (!wanted) { return; }
    this.wanted = null;
    this.busy = true;
    fetch(this.address(wanted[0], wanted[1]), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404) { self.missing = true; }
        if (response.status === 403) { linksExpired(); }
        if (!response.ok) { throw new Error("no answer"); }
        return response.json();
      })
      .then(function (answer) { if (generation === self.generation) { self.show(answer); } })
      .catch(function () { if (generation === self.generation) { self.show(null); } })
      .then(function () { self.busy = false; self.next(); });
  };

  // Pixel values from the tile server: `kind` is "pixel" (one value) or "block" (the 5x5 values around it,
  // for the pixel table), of the plane shown (display.js keeps it on the viewer element).
  function valueReader(base, show, kind) {
    return new PixelReader(base ? function (x, y) {
      var plane = Number(document.getElementById("viewer").dataset.plane || 0);
      return base + (plane > 0 ? "planes/" + plane + "/" : "") + (kind || "pixel") + "/" + x + "_" + y;
    } : null, show);
  }

  // The pixel table: the values around the pixel, its own in the middle, as DS9 shows them.
  function fillTable(table, answer) {
    while (table.firstChild) { table.removeChild(table.firstChild); }
    if (!answer || !answer.values) { return; }
    var head = document.createElement("tr");
    head.appendChild(document.createElement("th"));
    answer.columns.forEach(function (column) {
      var cell = document.createElement("th");
      cell.scope = "col";
      cell.textContent = "x " + column;
      head.appendChild(cell);
    });
    table.appendChild(head);
    answer.values.forEach(function (values, r) {
      var row = document.createElement("tr");
      var label = document.createElement("th");
      label.scope = "row";
      label.textContent = "y " + answer.rows[r];
      row.appendChild(label);
      values.forEach(function (value, c) {
        var cell = document.createElement("td");
        cell.textContent = formatValue(value);
        if (answer.columns[c] === answer.x && answer.rows[r] === answer.y) { cell.className = "centre"; }
        row.appendChild(cell);
      });
      table.appendChild(row);
    });
  }

  // Tile links are signed and expire (the token's first part is the expiry, in seconds since 1970, hex).
  // When they lapse, or the server refuses one (the image was made private, deleted or replaced), pixel
  // values and new displays can no longer load: the page says so once and offers to reload.
  function expiryOf(base) {
    var match = /\/tiles\/[^/]+\/([0-9a-f]+)\./.exec(base || "");
    return match ? parseInt(match[1], 16) : null;
  }

  function linksExpired() {
    if (document.getElementById("links-expired")) { return; }
    var flash = document.getElementById("flash");
    if (!flash) { return; }
    var notice = document.createElement("p");
    notice.id = "links-expired";
    notice.className = "error";
    notice.textContent = "This page's links to the image's tiles have expired, so pixel values and new " +
      "displays cannot load. ";
    var reload = document.createElement("button");
    reload.type = "button";
    reload.textContent = "Reload the page";
    reload.addEventListener("click", function () { window.location.reload(); });
    notice.appendChild(reload);
    flash.appendChild(notice);
  }
  window.imagexLinksExpired = linksExpired;

  // Ask the server whether the page's tile links still hold (after a tile or a display failed to load).
  var lastProbe = 0;
  function probeLinks(base) {
    var now = Date.now();
    if (!base || now - lastProbe < 5000) { return; }
    lastProbe = now;
    fetch(base + "image.dzi").then(function (response) {
      if (response.status === 403) { linksExpired(); }
    }).catch(function () { /* offline: nothing to say about the links */ });
  }

  function start() {
    var element = document.getElementById("viewer");
    if (!element || typeof OpenSeadragon === "undefined") { return; }
    var width = Number(element.dataset.width), height = Number(element.dataset.height);
    var isFits = element.dataset.fits === "true";
    // The sky description arrives after the page (see useDescription); until then only x/y and values.
    var grid = null, map = null, physical = null, roughness = "";
    var viewer = OpenSeadragon({
      element: element,
      tileSources: element.dataset.dzi,
      prefixUrl: element.dataset.prefix,
      showNavigator: true,
      showFullPageControl: false,  // the page's own "Full page" keeps the readout and tools (workspace.js)
      maxZoomPixelRatio: 8,
      crossOriginPolicy: false,
      gestureSettingsMouse: { clickToZoom: false }
    });
    window.imagexViewer = viewer;
    var expires = expiryOf(element.dataset.tiles);
    if (expires) {
      // a timer's longest wait is about 24 days; links last hours
      setTimeout(linksExpired, Math.min(Math.max(0, expires * 1000 - Date.now()) + 1000, 2147483647));
    }
    viewer.addHandler("open-failed", function () { probeLinks(element.dataset.tiles); });
    viewer.addHandler("tile-load-failed", function () { probeLinks(element.dataset.tiles); });
    var readout = document.getElementById("readout");
    var valueOut = document.getElementById("readout-value");
    var skyOut = document.getElementById("readout-sky");
    var galactic = document.getElementById("readout-galactic");
    var values = valueReader(element.dataset.tiles, function (answer) {
      var text = answer === undefined ? "\u2026" : formatValue(answer && answer.value);
      if (answer && answer.rgb) {
        text = "R " + formatValue(answer.rgb[0]) + ", G " + formatValue(answer.rgb[1]) + ", B " + formatValue(answer.rgb[2]);
      }
      setText(valueOut, "value " + text + (element.dataset.planeLabel ? " (" + element.dataset.planeLabel + ")" : ""));
    });
    // exact positions (astropy 0-based pixels ax, ay), kept by pixel for the page's life
    var exact = new PixelReader(element.dataset.position ? function (ax, ay) {
      return element.dataset.position + "?x=" + (ax + 1) + "&y=" + (ay + 1);
    } : null, function (answer) {
      if (answer === undefined) { setText(skyOut, "\u2026"); return; }
      if (!answer) {
        // no answer (a refused or failed request): the grid's position, with what it may be off by
        if (last && grid) { setText(skyOut, ImagexOverlays.skyText(grid, last[0], height - 1 - last[1], galactic && galactic.checked, roughness)); }
        return;
      }
      exact.known[(answer.x - 1) + "," + (answer.y - 1)] = answer.sky;
      if (last) { showSky(last[0], last[1]); }
    });
    exact.known = {};
    var table = document.getElementById("pixel-table");
    var tableToggle = document.getElementById("pixel-table-toggle");
    var tableReader = valueReader(element.dataset.tiles, function (answer) {
      if (answer !== undefined && table) { fillTable(table, answer); }
    }, "block");
    var last = null, locked = null;

    // Image coordinates (OpenSeadragon: 0 at the left/top edge, y down) to astropy's 0-based pixels (y up)
    // and to FITS pixels (astropy + 1); non-FITS images count from 0 at the top, as they are stored.
    function astropyOf(point) { return [point.x - 0.5, height - point.y - 0.5]; }
    function fitsOf(point) { return isFits ? [point.x + 0.5, height - point.y + 0.5] : [point.x - 0.5, point.y - 0.5]; }
    function imageOf(x, y) { return isFits ? new OpenSeadragon.Point(x - 0.5, height - y + 0.5) : new OpenSeadragon.Point(x + 0.5, y + 0.5); }

    function showSky(x, y) {
      // a map: longitude/latitude, never RA/Dec (the page offers no Galactic toggle for it)
      if (map) { setText(skyOut, map.text(x, y)); return; }
      if (!grid) { setText(skyOut, ""); return; }
      // the centre of the pixel under the cursor, like its x/y and value
      var ax = x, ay = height - 1 - y, inGalactic = galactic && galactic.checked;
      if (element.dataset.position && grid.isRough(ax, ay)) {
        // where the grid cannot follow the projection (an all-sky map's rim): astropy's position
        var known = exact.known[ax + "," + ay];
        if (known !== undefined) {
          setText(skyOut, ImagexOverlays.positionText(known && (inGalactic ? [known.l, known.b] : [known.ra, known.dec]),
                                                     inGalactic, ""));
        } else {
          exact.ask(ax, ay);
        }
        return;
      }
      exact.cancel();
      setText(skyOut, ImagexOverlays.skyText(grid, ax, ay, inGalactic, roughness));
    }

    function clear() {
      if (locked) { return; }  // a locked pixel stays in the readout until it is unlocked
      last = null;
      values.cancel();
      tableReader.cancel();
      exact.cancel();
      setText(readout, "\u00a0");
      setText(valueOut, "");
      setText(skyOut, "");
      if (table) { fillTable(table, null); }
    }

    function show(x, y) {
      last = [x, y];
      // FITS counts pixels from 1 at the bottom-left; the display shows the bottom row last.
      setText(readout, (locked ? "locked at " : "") + (isFits ? "x " + (x + 1) + ", y " + (height - y) : "x " + x + ", y " + y));
      showSky(x, y);
      values.ask(x, y);
      if (table && tableToggle && tableToggle.checked) { tableReader.ask(x, y); }
    }

    // Crosshair: a click (not a drag) locks the readout on that pixel, marked by a crosshair; arrow keys
    // move it a pixel at a time; another click elsewhere moves it, a click on it or Escape unlocks.
    var crosshair = document.createElement("div");
    crosshair.id = "crosshair";
    crosshair.className = "crosshair";
    function placeCrosshair() {
      viewer.removeOverlay(crosshair);
      if (!locked) { return; }
      var item = viewer.world.getItemAt(0);
      var centre = item.imageToViewportCoordinates(new OpenSeadragon.Point(locked[0] + 0.5, locked[1] + 0.5));
      viewer.addOverlay({ element: crosshair, location: centre, placement: OpenSeadragon.Placement.CENTER });
    }
    function lock(pixel) {
      locked = pixel;
      placeCrosshair();
      if (pixel) { show(pixel[0], pixel[1]); } else { clear(); }
    }
    viewer.addHandler("canvas-click", function (event) {
      if (!event.quick || !viewer.world.getItemCount()) { return; }
      var item = viewer.world.getItemAt(0);
      var pixel = item.viewportToImageCoordinates(viewer.viewport.pointFromPixel(event.position));
      var x = Math.floor(pixel.x), y = Math.floor(pixel.y);
      if (x < 0 || y < 0 || x >= width || y >= height) { return; }
      lock(locked && locked[0] === x && locked[1] === y ? null : [x, y]);
    });
    document.addEventListener("keydown", function (event) {
      if (!locked) { return; }
      var target = event.target;
      if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) { return; }
      var moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
      if (event.key === "Escape") { lock(null); return; }
      var move = moves[event.key];
      if (!move) { return; }
      event.preventDefault();
      lock([Math.min(Math.max(locked[0] + move[0], 0), width - 1), Math.min(Math.max(locked[1] + move[1], 0), height - 1)]);
    });
    if (tableToggle && table) {
      tableToggle.addEventListener("change", function () {
        table.hidden = !tableToggle.checked;
        if (tableToggle.checked && last) { tableReader.ask(last[0], last[1]); }
      });
    }

    // A loading indicator while the pyramids shown are still fetching tiles for the view (after a short
    // wait, so that tiles from the cache cause no flicker).
    var loading = document.createElement("div");
    loading.id = "loading";
    loading.className = "loading";
    loading.setAttribute("role", "status");
    loading.textContent = "Loading tiles\u2026";
    // shown and hidden through its style: OpenSeadragon's control wrapper would override `hidden`
    function showLoading(shown) { loading.style.display = shown ? "" : "none"; }
    showLoading(false);
    var loadingTimer = null;
    function anyLoading() {
      for (var i = 0; i < viewer.world.getItemCount(); i++) {
        if (!viewer.world.getItemAt(i).getFullyLoaded()) { return true; }
      }
      return false;
    }
    function refreshLoading() {
      if (!anyLoading()) {
        clearTimeout(loadingTimer);
        loadingTimer = null;
        showLoading(false);
      } else if (loading.style.display === "none" && !loadingTimer) {
        loadingTimer = setTimeout(function () { loadingTimer = null; showLoading(anyLoading()); }, 300);
      }
    }
    viewer.world.addHandler("add-item", function (event) {
      event.item.addHandler("fully-loaded-change", refreshLoading);
      refreshLoading();
    });
    viewer.world.addHandler("remove-item", refreshLoading);
    viewer.addHandler("animation-finish", refreshLoading);

    var tracker = new OpenSeadragon.MouseTracker({
      element: viewer.container,
      moveHandler: function (event) {
        if (!viewer.world.getItemCount() || locked) { return; }
        var point = viewer.viewport.pointFromPixel(event.position);
        var pixel = viewer.world.getItemAt(0).viewportToImageCoordinates(point);
        var x = Math.floor(pixel.x), y = Math.floor(pixel.y);
        if (x < 0 || y < 0 || x >= width || y >= height) { clear(); return; }
        if (last && last[0] === x && last[1] === y) { return; }
        show(x, y);
      }
    });
    tracker.setTracking(true);
    if (galactic) { galactic.addEventListener("change", function () { if (last) { showSky(last[0], last[1]); } }); }

    // Scale bar and compass, redrawn for the view centre whenever the view changes.
    var overlays = new ImagexOverlays.ScaleAndCompass(viewer);

    function imageZoom() {
      var item = viewer.world.getItemAt(0);
      return item ? item.viewportToImageZoom(viewer.viewport.getZoom(true)) : 0;
    }

    function drawOverlays() {
      var zoom = imageZoom();
      if (!viewer.world.getItemCount() || !(zoom > 0)) { return; }
      var centre = viewer.world.getItemAt(0).viewportToImageCoordinates(viewer.viewport.getCenter(true));
      var local = grid ? grid.local.apply(grid, astropyOf(centre)) : null;
      // a map's compass points to north and east as its longitude/latitude grid has them; its scale bar
      // is in metres (physical), never in angles
      var mapLocal = !local && map ? map.grid.local.apply(map.grid, astropyOf(centre)) : null;
      var units = null, perPixel = null;
      if (local) {
        units = ImagexSky.ANGLE_UNITS; perPixel = local.arcsecPerPixel;
      } else if (physical) {
        units = ImagexSky.LENGTH_UNITS; perPixel = Math.sqrt(physical.x * physical.y);
      }
      // each direction as the screen shows it, through OpenSeadragon's own rotation and flip
      overlays.draw(local || mapLocal, units, perPixel, zoom, function (direction) { return screenAngle(centre, direction); });
    }

    // The angle on screen (degrees clockwise from up) of a pixel direction (astropy's: x right, y up) at
    // image point `at`, through the viewport's rotation and flip.
    function screenAngle(at, direction) {
      var item = viewer.world.getItemAt(0), viewport = viewer.viewport;
      var step = 4 / Math.max(imageZoom(), 1e-9);  // a few screen pixels
      var from = viewport.pixelFromPoint(item.imageToViewportCoordinates(at), true);
      var to = viewport.pixelFromPoint(item.imageToViewportCoordinates(
        new OpenSeadragon.Point(at.x + direction[0] * step, at.y - direction[1] * step)), true);
      return Math.atan2(to.x - from.x, -(to.y - from.y)) * 180 / Math.PI;
    }

    // North up: the view turned so that north points up at the view's centre, and east left (right for an
    // image of a mirrored sky, which a turn cannot undo: OpenSeadragon's flip moves the picture but not its
    // coordinates, so the readout would no longer be exact). The readout, crosshair and compass follow the
    // turn through OpenSeadragon's own transform.
    var northUp = document.getElementById("north-up");
    function turnNorthUp(on) {
      var viewport = viewer.viewport;
      if (!on || !grid || !viewer.world.getItemCount()) {
        viewport.setRotation(0, true);
        drawOverlays();
        return;
      }
      var centre = viewer.world.getItemAt(0).viewportToImageCoordinates(viewport.getCenter(true));
      var local = grid.local.apply(grid, astropyOf(centre));
      if (!local) { return; }
      viewport.setRotation(0, true);
      viewport.setRotation(-screenAngle(centre, local.north), true);
      var mirrored = local.north[0] * local.east[1] - local.north[1] * local.east[0] < 0;
      northUp.parentNode.title = mirrored ? "north is up; this image's sky is mirrored, so east is to the right" :
        "north is up and east to the left";
      drawOverlays();
    }
    if (northUp) {
      northUp.addEventListener("change", function () { turnNorthUp(northUp.checked); });
    }

    // The view in the URL: x, y (FITS pixels of the centre) and zoom; other parameters are left alone.
    // The whole image (the home view) needs none, so a plain link stays plain until the user moves.
    function saveView() {
      var zoom = imageZoom();
      if (!(zoom > 0)) { return; }
      var viewport = viewer.viewport, item = viewer.world.getItemAt(0);
      var centre = item.viewportToImageCoordinates(viewport.getCenter(false));
      var homeCentre = item.viewportToImageCoordinates(viewport.getHomeBounds().getCenter());
      var atHome = Math.abs(viewport.getZoom(false) / viewport.getHomeZoom() - 1) < 1e-6 &&
        Math.abs(centre.x - homeCentre.x) < 0.01 && Math.abs(centre.y - homeCentre.y) < 0.01;
      var url = new URL(window.location.href);
      if (atHome) {
        VIEW_PARAMS.forEach(function (name) { url.searchParams.delete(name); });
      } else {
        var fits = fitsOf(centre);
        url.searchParams.set("x", fits[0].toFixed(2));
        url.searchParams.set("y", fits[1].toFixed(2));
        url.searchParams.set("zoom", String(Number(zoom.toPrecision(5))));
      }
      if (url.toString() !== window.location.href) {
        window.history.replaceState(window.history.state, "", url.toString());
      }
    }

    function restoreView() {
      var params = new URLSearchParams(window.location.search);
      var asked = VIEW_PARAMS.map(function (name) { return params.has(name) ? Number(params.get(name)) : NaN; });
      var item = viewer.world.getItemAt(0);
      if (!item) { return; }
      if (isFinite(asked[2]) && asked[2] > 0) {
        var zoom = item.imageToViewportZoom(asked[2]);
        var limited = Math.min(Math.max(zoom, viewer.viewport.getMinZoom()), viewer.viewport.getMaxZoom());
        viewer.viewport.zoomTo(limited, null, true);
      }
      if (isFinite(asked[0]) && isFinite(asked[1])) {
        var x = Math.min(Math.max(asked[0], isFits ? 0.5 : -0.5), isFits ? width + 0.5 : width - 0.5);
        var y = Math.min(Math.max(asked[1], isFits ? 0.5 : -0.5), isFits ? height + 0.5 : height - 0.5);
        viewer.viewport.panTo(item.imageToViewportCoordinates(imageOf(x, y)), true);
      }
    }

    // /api/images/<id>/readout: the grid for RA/Dec (null without a celestial WCS), the map's grid for
    // longitude/latitude (null but for a GeoTIFF with a known CRS) and a physical pixel size.
    function useDescription(described) {
      if (!described || typeof ImagexSky === "undefined") { return; }
      grid = described.celestial ? new ImagexSky.Grid(described.celestial) : null;
      map = described.geographic && !grid ? new ImagexSky.MapGrid(described.geographic) : null;
      physical = described.physical || null;
      // A projection the grid could not follow within 0.1" (e.g. an all-sky map near its rim) says so.
      roughness = ImagexOverlays.roughness(grid ? described.celestial : null);
      element.dataset.described = "true";
      drawOverlays();
      if (last) { showSky(last[0], last[1]); }
    }
    if (element.dataset.readout) {
      fetch(element.dataset.readout, { headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(useDescription)
        .catch(function () { /* no description: the readout keeps x/y and values */ });
    }

    viewer.addOnceHandler("open", function () {
      viewer.addControl(loading, { anchor: OpenSeadragon.ControlAnchor.TOP_RIGHT, autoFade: false });
      restoreView();
      drawOverlays();
    });
    viewer.addHandler("animation", drawOverlays);
    viewer.addHandler("animation-finish", function () { drawOverlays(); saveView(); });
    viewer.addHandler("resize", drawOverlays);

    // Go to RA/Dec: the server places the position with astropy; off the image gets its message.
    var form = document.getElementById("goto");
    var message = document.getElementById("goto-message");
    if (form && message && element.dataset.locate) {
      ImagexOverlays.goTo(viewer, form, message, element.dataset.locate, function (answer) {
        return viewer.world.getItemAt(0).imageToViewportCoordinates(imageOf(answer.x, answer.y));
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
