// Mosaics and embeds: OpenSeadragon with one TiledImage per placed image (or per piece of one, clipped),
// placed as the server computed from the WCS; an image no similarity places is drawn resampled into the frame. Controls (show/hide, opacity, colormap, blink) are drawn for
// one page of images at a time, so a mosaic of hundreds stays light; OpenSeadragon loads only the tiles in
// view. The embed of an image with planes has a plane slider (planes.js): a plane other than the first is
// shown with the dynamic tiles of that plane in the image's own display. The frame is north up (or one image's
// pixel grid, `ref=`); under the cursor its RA/Dec, with the scale bar, compass and go-to that the image page
// has (overlays.js). With `scaling=common` every image is drawn through the same interval.
(function () {
  "use strict";

  var PAGE_SIZE = 25;
  var MANY = 12;  // more layers than this: the lighter drawing set-up
  var DZI_NS = "http://schemas.microsoft.com/deepzoom/2008";

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function start() {
    var container = document.getElementById("mosaic-viewer");
    var source = document.getElementById("mosaic-data");
    if (!container || !source || typeof OpenSeadragon === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    if (!data.layers.length) { return; }
    // viewport units: the frame is 1 wide
    var frame = data.frame;
    var unit = 1 / frame.width;
    var options = {
      element: container,
      prefixUrl: container.dataset.prefix,
      showNavigator: !document.body.classList.contains("embed") && data.layers.length <= MANY,
      maxZoomPixelRatio: 8,
      crossOriginPolicy: false,
      gestureSettingsMouse: { clickToZoom: false }
    };
    if (data.layers.length > MANY) {
      // The WebGL drawer composites every image through its own texture each frame; with many small
      // images the 2-D canvas, which just draws the tiles, keeps frames fast.
      options.drawer = "canvas";
    }
    var viewer = OpenSeadragon(options);

    var blink = { timer: null, current: null };
    var layers = data.layers.map(function (layer, index) {
      return { data: layer, index: index, visible: true, opacity: 1, colormap: "grey", items: [],
               failed: "", pending: 0, plane: index === 0 && data.planes ? data.plane : 0, wanted: null };
    });

    function tileSource(layer, colormap) {
      if (layer.plane > 0) {
        return layer.data.tiles_url + "planes/" + layer.plane + "/display/" + layer.data.scaling + "~" +
          encodeURIComponent(colormap) + "/image.dzi";
      }
      if (colormap === "grey" && data.scaling !== "common" && !layer.data.tiling) {
        // the static Deep Zoom pyramid, described inline: no descriptor request per image
        return { Image: { xmlns: DZI_NS, Url: layer.data.tiles_url + "image_files/",
                          Format: data.tile_format.format, Overlap: String(data.tile_format.overlap),
                          TileSize: String(data.tile_format.tile_size),
                          Size: { Width: String(layer.data.width), Height: String(layer.data.height) } } };
      }
      return layer.data.tiles_url + "display/" + layer.data.scaling + "~" + encodeURIComponent(colormap) +
        "/image.dzi";
    }

    function shownOpacity(layer) {
      if (blink.timer !== null) { return blink.current === layer ? layer.opacity : 0; }
      return layer.visible ? layer.opacity : 0;
    }

    // An image no similarities place within half a pixel (non-square pixels, skewed axes) is drawn as one
    // layer in the frame's own pixels, its tiles resampled by the server (PNG: transparent off the image).
    function warpSource(layer, colormap) {
      var warp = layer.data.warp;
      var base = layer.data.tiles_url + (layer.plane > 0 ? "planes/" + layer.plane + "/" : "") + "warp/" +
        warp.frame + "/" + layer.data.scaling + "~" + encodeURIComponent(colormap) + "/image_files/";
      return { width: warp.width, height: warp.height, tileSize: data.tile_format.tile_size,
               tileOverlap: data.tile_format.overlap, minLevel: 0,
               getTileUrl: function (level, x, y) { return base + level + "/" + x + "_" + y + ".png"; } };
    }

    function addPieces(layer, colormap, replacing, done) {
      var warp = layer.data.warp;
      var pieces = warp ? [{ x: warp.x, y: warp.y, width: warp.width, degrees: 0, flipped: false }]
        : layer.data.pieces;
      var items = new Array(pieces.length);
      var remaining = pieces.length, failure = "";
      pieces.forEach(function (piece, number) {
        var options = {
          tileSource: warp ? warpSource(layer, colormap) : tileSource(layer, colormap),
          x: piece.x * unit, y: piece.y * unit, width: piece.width * unit,
          degrees: piece.degrees, flipped: piece.flipped,
          opacity: shownOpacity(layer), preload: blink.timer !== null,
          success: function (event) {
            items[number] = event.item;
            finish();
          },
          error: function (event) {
            failure = (event && event.message) || "could not be loaded";
            finish();
          }
        };
        if (!warp && pieces.length > 1) {
          options.clip = new OpenSeadragon.Rect(piece.clip[0], piece.clip[1], piece.clip[2], piece.clip[3]);
        }
        if (replacing) {
          options.index = viewer.world.getIndexOfItem(replacing[number]);
          options.replace = true;
        }
        viewer.addTiledImage(options);
      });
      function finish() {
        remaining -= 1;
        if (remaining === 0) { done(failure ? null : items, failure); }
      }
    }

    // the world's size is figured once, when every image is in, not again after each one
    var adding = layers.length;
    viewer.world.setAutoRefigureSizes(false);
    layers.forEach(function (layer) {
      addPieces(layer, "grey", null, function (items, failure) {
        layer.items = items || [];
        layer.failed = failure;
        refresh(layer);
        adding -= 1;
        if (adding === 0) {
          viewer.world.setAutoRefigureSizes(true);
          viewer.viewport.goHome(true);
          if (drawOverlays) { drawOverlays(); }
        }
        if (layer.wanted !== null) { setPlane(layer, layer.wanted); }
      });
    });

    // `callback()` once every one of `items` has loaded the tiles the view needs (at once when the layer
    // is not drawn: nothing would load)
    function whenLoaded(layer, items, callback) {
      var waiting = shownOpacity(layer) > 0 ? items.filter(function (item) { return !item.getFullyLoaded(); }) : [];
      if (!waiting.length) { callback(); return; }
      waiting.forEach(function (item) {
        var loaded = function (change) {
          if (!change.fullyLoaded) { return; }
          item.removeHandler("fully-loaded-change", loaded);
          waiting = waiting.filter(function (other) { return other !== item; });
          if (!waiting.length) { callback(); }
        };
        item.addHandler("fully-loaded-change", loaded);
      });
    }

    // Show plane `index` (from 0) of the layer: the plane's pyramid is laid over the one shown, which is
    // removed once the new one has loaded, so the image never goes blank. A change asked for while one is
    // under way is made after it (only the last one asked for).
    function setPlane(layer, index) {
      layer.wanted = index;
      if (layer.pending || !layer.items.length || index === layer.plane) { return; }
      var previous = layer.plane, old = layer.items;
      layer.plane = index;
      layer.pending += 1;
      addPieces(layer, layer.colormap, null, function (items, failure) {
        if (!items) {
          layer.pending -= 1;
          layer.plane = previous;
          layer.wanted = previous;
          layer.failed = "plane " + (index + 1) + " is not available: " + failure;
          refresh(layer);
          return;
        }
        whenLoaded(layer, items, function () {
          old.forEach(function (item) { viewer.world.removeItem(item); });
          layer.items = items;
          layer.failed = "";
          layer.pending -= 1;
          apply(layer);
          refresh(layer);
          if (layer.wanted !== layer.plane) { setPlane(layer, layer.wanted); }
        });
      });
    }

    var planeBox = document.getElementById("plane-controls");
    if (data.planes && planeBox && window.ImagexPlanes) {
      var slider = window.ImagexPlanes.control(planeBox, data.planes, function (index) {
        setPlane(layers[0], index);
      });
      if (data.plane) { slider.set(data.plane); }
    }

    function apply(layer) {
      var opacity = shownOpacity(layer);
      layer.items.forEach(function (item) {
        if (!item) { return; }
        item.setOpacity(opacity);
        item.setPreload(blink.timer !== null && layer.visible);
      });
    }

    // blink: show one visible image at a time, in turn
    var blinkButton = document.getElementById("mosaic-blink");
    var blinking = document.getElementById("mosaic-blinking");
    var interval = document.getElementById("mosaic-blink-interval");

    function step(direction) {
      var shown = layers.filter(function (layer) { return layer.visible && layer.items.length; });
      if (!shown.length) { stopBlink(); return; }
      var at = shown.indexOf(blink.current);
      blink.current = shown[(at + direction + shown.length) % shown.length];
      layers.forEach(apply);
      if (blinking) { blinking.textContent = "Showing " + blink.current.data.name; }
      renderList();
    }

    function startBlink() {
      blink.timer = window.setInterval(function () { step(1); }, Number(interval ? interval.value : 1000));
      if (blinkButton) { blinkButton.setAttribute("aria-pressed", "true"); blinkButton.textContent = "Stop blinking"; }
      step(1);
    }

    function stopBlink() {
      if (blink.timer !== null) { window.clearInterval(blink.timer); }
      blink.timer = null;
      blink.current = null;
      if (blinkButton) { blinkButton.setAttribute("aria-pressed", "false"); blinkButton.textContent = "Blink"; }
      if (blinking) { blinking.textContent = ""; }
      layers.forEach(apply);
      renderList();
    }

    if (blinkButton) {
      blinkButton.addEventListener("click", function () {
        if (blink.timer === null) { startBlink(); } else { stopBlink(); }
      });
    }
    if (interval) {
      interval.addEventListener("change", function () {
        if (blink.timer !== null) { stopBlink(); startBlink(); }
      });
    }

    function setColormap(layer, colormap) {
      if (!layer.items.length) { return; }
      var previous = layer.colormap;
      layer.colormap = colormap;
      layer.pending += 1;
      refresh(layer);
      addPieces(layer, colormap, layer.items, function (items, failure) {
        layer.pending -= 1;
        if (items) {
          layer.items = items;
          layer.failed = "";
        } else {
          layer.colormap = previous;
          layer.failed = "colormap " + colormap + " is not available: " + failure;
        }
        apply(layer);
        refresh(layer);
      });
    }

    // the list: one page of rows at a time
    var list = document.getElementById("mosaic-layers");
    var pager = document.getElementById("mosaic-pager");
    var pageLabel = document.getElementById("mosaic-page");
    var page = 0;
    var pages = Math.max(1, Math.ceil(layers.length / PAGE_SIZE));

    function row(layer) {
      var item = element("li", { "class": "mosaic-layer", "data-id": layer.data.id });
      if (blink.current === layer) { item.classList.add("current"); }
      var show = element("input", { type: "checkbox", "aria-label": "show " + layer.data.name });
      show.checked = layer.visible;
      show.addEventListener("change", function () { layer.visible = show.checked; apply(layer); });
      var name = element("a", { href: layer.data.url }, layer.data.name);
      var opacity = element("input", { type: "range", min: "0", max: "1", step: "0.05",
                                       value: String(layer.opacity), "aria-label": "opacity of " + layer.data.name });
      opacity.addEventListener("input", function () { layer.opacity = Number(opacity.value); apply(layer); });
      var colormap = element("select", { "aria-label": "colormap of " + layer.data.name });
      data.colormaps.forEach(function (name) {
        colormap.appendChild(element("option", { value: name }, name));
        colormap.appendChild(element("option", { value: name + "_r" }, name + " inverted"));
      });
      colormap.value = layer.colormap;
      colormap.disabled = layer.pending > 0;
      colormap.addEventListener("change", function () { setColormap(layer, colormap.value); });
      var tools = element("div", { "class": "mosaic-layer-tools" });
      tools.append(opacity, colormap);
      item.append(show, " ", name, tools);
      if (layer.data.error_px > 1) {
        item.appendChild(element("span", { "class": "meta" }, " placed within " + layer.data.error_px.toFixed(1) + " px"));
      }
      if (layer.failed) { item.appendChild(element("span", { "class": "error" }, " " + layer.failed)); }
      return item;
    }

    function renderList() {
      if (!list) { return; }
      list.replaceChildren.apply(list, layers.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE).map(row));
      list.start = page * PAGE_SIZE + 1;
      if (pager) {
        pager.hidden = pages < 2;
        pageLabel.textContent = "page " + (page + 1) + " of " + pages;
      }
    }

    function refresh(layer) {
      if (list && layer.index >= page * PAGE_SIZE && layer.index < (page + 1) * PAGE_SIZE) { renderList(); }
    }

    function turnPage(by) {
      page = Math.min(pages - 1, Math.max(0, page + by));
      renderList();
    }

    if (pager) {
      document.getElementById("mosaic-previous").addEventListener("click", function () { turnPage(-1); });
      document.getElementById("mosaic-next").addEventListener("click", function () { turnPage(1); });
    }
    [["mosaic-show-all", true], ["mosaic-hide-all", false]].forEach(function (pair) {
      var button = document.getElementById(pair[0]);
      if (!button) { return; }
      button.addEventListener("click", function () {
        layers.forEach(function (layer) { layer.visible = pair[1]; apply(layer); });
        renderList();
      });
    });
    renderList();

    // For tests and scripts: where image pixel (u, v) of layer `index` is on the viewer element (the
    // piece holding it, and the flip, taken into account).
    function toElement(index, u, v) {
      var layer = layers[index];
      if (layer.data.warp) { return null; }  // drawn resampled: its pixels are found through the frame
      var best = 0, distance = Infinity;
      layer.data.pieces.forEach(function (piece, number) {
        var r = piece.region;
        var d = Math.hypot(Math.max(r[0] - u, 0, u - r[0] - r[2]), Math.max(r[1] - v, 0, v - r[1] - r[3]));
        if (d < distance) { distance = d; best = number; }
      });
      var piece = layer.data.pieces[best];
      var x = piece.flipped ? layer.data.width - u : u;
      var point = layer.items[best].imageToViewerElementCoordinates(new OpenSeadragon.Point(x, v));
      return { x: point.x, y: point.y };
    }

    // The frame's sky: RA/Dec under the cursor, scale bar, compass and go to, as on the image page.
    // Frame pixels: "display" ones (0 at the top-left edge, y down) are viewport units / unit; astropy's
    // are 0 at the first pixel's centre, y up.
    var grid = frame.celestial && typeof ImagexSky !== "undefined" ? new ImagexSky.Grid(frame.celestial) : null;
    var rough = window.ImagexOverlays ? ImagexOverlays.roughness(frame.celestial) : "";
    function astropyOf(point) { return [point.x / unit - 0.5, frame.height - point.y / unit - 0.5]; }
    function pointOf(ax, ay) { return new OpenSeadragon.Point((ax + 0.5) * unit, (frame.height - ay - 0.5) * unit); }
    var skyOut = document.getElementById("readout-sky");
    var galactic = document.getElementById("readout-galactic");
    function showSky(point) {
      if (!skyOut || !grid) { return; }
      if (!point) { skyOut.textContent = ""; return; }
      var at = astropyOf(point);
      skyOut.textContent = ImagexOverlays.skyText(grid, at[0], at[1], galactic && galactic.checked, rough);
    }
    var lastPoint = null, drawOverlays = null;
    if (grid && window.ImagexOverlays) {
      new OpenSeadragon.MouseTracker({
        element: viewer.container,
        moveHandler: function (event) { lastPoint = viewer.viewport.pointFromPixel(event.position); showSky(lastPoint); },
        leaveHandler: function () { lastPoint = null; showSky(null); }
      }).setTracking(true);
      if (galactic) { galactic.addEventListener("change", function () { showSky(lastPoint); }); }
      var overlays = new ImagexOverlays.ScaleAndCompass(viewer);
      var screenAngle = function (at, direction) {
        var from = viewer.viewport.pixelFromPoint(pointOf(at[0], at[1]), true);
        var to = viewer.viewport.pixelFromPoint(pointOf(at[0] + direction[0], at[1] + direction[1]), true);
        return Math.atan2(to.x - from.x, -(to.y - from.y)) * 180 / Math.PI;
      };
      drawOverlays = function () {
        var centre = astropyOf(viewer.viewport.getCenter(true));
        var local = grid.local(centre[0], centre[1]);
        var zoom = viewer.viewport.deltaPixelsFromPoints(new OpenSeadragon.Point(unit, 0), true).x;
        overlays.draw(local, ImagexSky.ANGLE_UNITS, local ? local.arcsecPerPixel : null, zoom,
          function (direction) { return screenAngle(centre, direction); });
      };
      viewer.addHandler("animation", drawOverlays);
      viewer.addHandler("animation-finish", drawOverlays);
      viewer.addHandler("resize", drawOverlays);
      var form = document.getElementById("goto"), message = document.getElementById("goto-message");
      if (form && message && form.dataset.locate) {
        ImagexOverlays.goTo(viewer, form, message, form.dataset.locate, function (answer) {
          return pointOf(answer.x - 1, answer.y - 1);
        });
      }
    }

    // The frame and scaling choices reload the page with them in its URL.
    [["mosaic-ref", "ref"], ["mosaic-scaling", "scaling"]].forEach(function (pair) {
      var select = document.getElementById(pair[0]);
      if (!select) { return; }
      select.addEventListener("change", function () {
        var url = new URL(window.location.href);
        if (select.value && select.value !== "image") { url.searchParams.set(pair[1], select.value); } else { url.searchParams.delete(pair[1]); }
        window.location.assign(url.toString());
      });
    });

    window.imagexViewer = viewer;
    window.imagexMosaic = {
      frame: frame, astropyOf: astropyOf, pointOf: pointOf,
      viewer: viewer, layers: layers, toElement: toElement, step: step,
      setColormap: function (index, colormap) { setColormap(layers[index], colormap); },
      setPlane: function (index, plane) { setPlane(layers[index], plane); },
      ready: function () {
        return layers.every(function (layer) { return layer.items.length || layer.failed; });
      }
    };
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
