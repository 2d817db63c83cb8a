// Display controls of the image page: interval, stretch and colormap. Any choice other than the image's
// default switches the viewer (window.imagexViewer) to dynamic tiles rendered by the server for that
// display, `<base><spec>/image.dzi` with spec `<interval>~<stretch>~<colormap>`; the default goes back to
// the static pyramid. The view keeps its centre and zoom: both pyramids have the same geometry.
// The choice lives in the page URL (interval, low, high, stretch, cmap), other parameters left alone.
// An image with planes (a cube, a series) has a plane slider (planes.js: the URL's `plane`, keys [ and ],
// Play): a plane other than the first is shown with dynamic tiles of that plane
// (`<tiles>planes/<k>/display/<spec>/image.dzi`), in the display chosen.
// The histogram (histogram.js) shows the plane's pixel values with the cuts of the display shown: the
// static pyramid's own limits, or those the server renders the dynamic tiles with (asked of
// /api/images/<id>/histogram); dragging a cut switches to the manual interval with the new limits, and
// choosing "manual" starts from the cuts in use.
(function () {
  "use strict";

  var PARAMS = ["interval", "low", "high", "stretch", "cmap"];
  // The names the server knows come from the page (its select options, made from the server's lists).
  var STRETCHES = [];
  var COLORMAPS = [];
  var INTERVALS = [];
  var NUMBER = "-?(?:\\d+(?:\\.\\d+)?|\\.\\d+)(?:e[-+]?\\d+)?";
  var SPEC = new RegExp("^(zscale|minmax|p(" + NUMBER + ")|m(" + NUMBER + "):(" + NUMBER + "))~([a-z]+)~([a-z]+?)(_r)?$");

  // The spec's spelling of a number is JavaScript's own String(number): the server checks it is canonical.
  function numberText(value) { return String(value); }

  function parseNumber(text) {
    var trimmed = String(text == null ? "" : text).trim();
    if (!trimmed) { return NaN; }
    return Number(trimmed);
  }

  // Controls state <-> spec text, and the state read from / written to the form and the URL.
  function specOf(state) {
    var interval = state.interval;
    if (interval === "percentile") {
      interval = "p" + numberText(state.percent);
    } else if (interval === "manual") {
      interval = "m" + numberText(state.low) + ":" + numberText(state.high);
    }
    return interval + "~" + state.stretch + "~" + state.cmap + (state.inverted ? "_r" : "");
  }

  function stateOfSpec(text) {
    var match = SPEC.exec(text || "");
    if (!match) { return null; }
    var state = {interval: match[1], percent: 99.5, low: NaN, high: NaN, stretch: match[5], cmap: match[6],
                 inverted: !!match[7]};
    if (match[2] !== undefined) { state.interval = "percentile"; state.percent = Number(match[2]); }
    if (match[3] !== undefined) { state.interval = "manual"; state.low = Number(match[3]); state.high = Number(match[4]); }
    return state;
  }

  function problem(state) {
    if (state.interval === "percentile" && !(state.percent > 50 && state.percent < 100)) {
      return "the percentile must be between 50 and 100 (e.g. 99.5)";
    }
    if (state.interval === "manual") {
      if (!isFinite(state.low) || !isFinite(state.high)) { return "low and high must be numbers"; }
      if (!(state.low < state.high)) { return "low must be less than high"; }
    }
    if (STRETCHES.indexOf(state.stretch) < 0) { return "unknown stretch " + state.stretch; }
    if (COLORMAPS.indexOf(state.cmap) < 0) { return "unknown colormap " + state.cmap; }
    return "";
  }

  function readForm(form) {
    var fields = form.elements;
    return {
      interval: fields.interval.value,
      percent: parseNumber(fields.percent.value),
      low: parseNumber(fields.low.value),
      high: parseNumber(fields.high.value),
      stretch: fields.stretch.value,
      cmap: fields.cmap.value,
      inverted: fields.inverted.checked
    };
  }

  function writeForm(form, state) {
    var fields = form.elements;
    fields.interval.value = state.interval;
    if (isFinite(state.percent)) { fields.percent.value = numberText(state.percent); }
    fields.low.value = isFinite(state.low) ? numberText(state.low) : "";
    fields.high.value = isFinite(state.high) ? numberText(state.high) : "";
    fields.stretch.value = state.stretch;
    fields.cmap.value = state.cmap;
    fields.inverted.checked = !!state.inverted;
    showFields(form);
  }

  function showFields(form) {
    var interval = form.elements.interval.value;
    form.querySelectorAll(".for-percentile").forEach(function (el) { el.hidden = interval !== "percentile"; });
    form.querySelectorAll(".for-manual").forEach(function (el) { el.hidden = interval !== "manual"; });
  }

  function stateOfUrl(defaults) {
    var params = new URLSearchParams(window.location.search);
    if (!PARAMS.some(function (name) { return params.has(name); })) { return null; }
    var state = Object.assign({}, defaults);
    var interval = params.get("interval");
    if (interval) {
      if (/^p/.test(interval)) {
        state.interval = "percentile";
        state.percent = parseNumber(interval.slice(1));
      } else {
        state.interval = interval;
      }
    }
    if (state.interval === "manual") {
      state.low = parseNumber(params.get("low"));
      state.high = parseNumber(params.get("high"));
    }
    if (params.get("stretch")) { state.stretch = params.get("stretch"); }
    var cmap = params.get("cmap");
    if (cmap) {
      state.inverted = /_r$/.test(cmap);
      state.cmap = cmap.replace(/_r$/, "");
    }
    if (INTERVALS.indexOf(state.interval) < 0) { return null; }
    return state;
  }

  function writeUrl(state, isDefault) {
    var url = new URL(window.location.href);
    PARAMS.forEach(function (name) { url.searchParams.delete(name); });
    if (!isDefault) {
      url.searchParams.set("interval", state.interval === "percentile" ? "p" + numberText(state.percent) : state.interval);
      if (state.interval === "manual") {
        url.searchParams.set("low", numberText(state.low));
        url.searchParams.set("high", numberText(state.high));
      }
      url.searchParams.set("stretch", state.stretch);
      url.searchParams.set("cmap", state.cmap + (state.inverted ? "_r" : ""));
    }
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }

  function start(form, viewer) {
    var base = form.dataset.base;
    var defaultSpec = form.dataset.default;
    var viewerElement = document.getElementById("viewer");
    var staticUrl = viewerElement.dataset.dzi;
    var tiles = viewerElement.dataset.tiles;
    var planes = form.dataset.planes && window.ImagexPlanes ? JSON.parse(form.dataset.planes) : null;
    var plane = 0;
    var defaults = stateOfSpec(defaultSpec);
    var message = form.elements.message;
    var shown = staticUrl;

    // The new pyramid is laid over the one shown and the old one removed once the new one has loaded
    // what the view needs, so the image never goes blank; a choice overtaken by a later one is dropped.
    function show(url) {
      if (url === shown) { return; }
      shown = url;
      var swap = function () {
        var current = viewer.world.getItemAt(viewer.world.getItemCount() - 1);
        if (!current || shown !== url) { return; }
        var bounds = current.getBounds();
        viewer.addTiledImage({
          tileSource: url, x: bounds.x, y: bounds.y, width: bounds.width,
          success: function (event) {
            var item = event.item;
            var settle = function () {
              if (shown !== url) {
                viewer.world.removeItem(item);
                return;
              }
              for (var i = viewer.world.getItemCount() - 1; i >= 0; i--) {
                var other = viewer.world.getItemAt(i);
                if (other !== item) { viewer.world.removeItem(other); }
              }
            };
            if (item.getFullyLoaded() || shown !== url) {
              settle();
              return;
            }
            var loaded = function (change) {
              if (!change.fullyLoaded && shown === url) { return; }
              item.removeHandler("fully-loaded-change", loaded);
              settle();
            };
            item.addHandler("fully-loaded-change", loaded);
          }
        });
      };
      if (viewer.world.getItemCount()) {
        swap();
      } else {
        viewer.addOnceHandler("open", swap);
      }
    }

    function apply(state) {
      var wrong = problem(state);
      message.textContent = wrong;
      if (wrong) { return; }
      var spec = specOf(state);
      var isDefault = spec === defaultSpec;
      writeUrl(state, isDefault);
      form.dataset.spec = spec;
      show(urlFor(spec));
      refreshCuts();
    }

    // The histogram and its cuts follow the display and the plane shown. A manual interval's cuts are its
    // own limits; the others are asked of the server (the plane's histogram comes with them), and an
    // answer overtaken by a later question is dropped.
    var histogramBox = document.getElementById("histogram");
    var histogram = null;
    var drawnPlane = -1;
    var asked = 0;
    var answered = 0;
    var waiting = [];
    if (histogramBox && window.ImagexHistogram) {
      histogram = new window.ImagexHistogram(histogramBox, function (low, high) {
        var state = readForm(form);
        state.interval = "manual";
        state.low = low;
        state.high = high;
        writeForm(form, state);
        apply(state);
      });
    }

    function refreshCuts() {
      if (!histogram) { return; }
      var spec = form.dataset.spec || defaultSpec;
      var state = stateOfSpec(spec);
      if (state && state.interval === "manual" && drawnPlane === plane) {
        asked += 1;
        answered = asked;
        histogram.setCuts(state.low, state.high);
        settle();
        return;
      }
      var question = ++asked;
      var url = histogramBox.dataset.url + "?display=" + encodeURIComponent(spec) + (plane > 0 ? "&plane=" + plane : "");
      fetch(url, {headers: {Accept: "application/json"}})
        .then(function (response) {
          if (!response.ok) { throw new Error("no histogram"); }
          return response.json();
        })
        .then(function (answer) {
          if (question !== asked) { return; }
          if (answer.plane !== drawnPlane || !histogram.data) {
            histogram.setData(answer);
            drawnPlane = answer.plane;
          }
          histogram.setCuts(answer.low, answer.high);
        })
        .catch(function () { /* no histogram: the controls work without it */ })
        .then(function () {
          if (question !== asked) { return; }
          answered = question;
          settle();
        });
    }

    function settle() {
      var callbacks = waiting;
      waiting = [];
      callbacks.forEach(function (callback) { callback(histogram.cuts()); });
    }

    // `callback(cuts)` with the cuts of the display shown, once the last question about them is answered
    function withCuts(callback) {
      if (answered === asked) { callback(histogram.cuts()); } else { waiting.push(callback); }
    }

    // The first plane in the default display is the static pyramid; anything else is rendered.
    function urlFor(spec) {
      if (plane === 0) { return spec === defaultSpec ? staticUrl : base + spec + "/image.dzi"; }
      return tiles + "planes/" + plane + "/display/" + spec + "/image.dzi";
    }

    // the plane slider's change: the tiles of that plane, its histogram, and the readout told which it is
    function showPlane(index, label) {
      plane = index;
      viewerElement.dataset.plane = String(index);
      viewerElement.dataset.planeLabel = "plane " + label;
      show(urlFor(form.dataset.spec || defaultSpec));
      refreshCuts();
    }
    var slider = planes ? window.ImagexPlanes.control(document.getElementById("plane-controls"), planes, showPlane)
      : null;

    writeForm(form, defaults);
    var restored = stateOfUrl(defaults);
    if (restored) {
      writeForm(form, restored);
      apply(readForm(form));
    } else {
      form.dataset.spec = defaultSpec;
    }
    var askedPlane = planes ? window.ImagexPlanes.asked(planes) : 0;
    if (slider && askedPlane > 0) {
      slider.set(askedPlane);
    } else {
      if (planes) { viewerElement.dataset.planeLabel = "plane " + window.ImagexPlanes.label(planes, 0); }
      if (!restored) { refreshCuts(); }
    }
    form.addEventListener("change", function (event) {
      if (event.target && event.target.name === "plane") { return; }
      showFields(form);
      if (event.target && event.target.name === "interval" && form.elements.interval.value === "manual" && histogram) {
        // "manual" starts from the cuts in use, not from empty fields
        withCuts(function (cuts) {
          if (cuts && form.elements.interval.value === "manual") {
            form.elements.low.value = numberText(cuts.low);
            form.elements.high.value = numberText(cuts.high);
          }
          apply(readForm(form));
        });
        return;
      }
      apply(readForm(form));
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      apply(readForm(form));
    });
    form.elements.reset.addEventListener("click", function () {
      writeForm(form, defaults);
      apply(defaults);
    });
  }

  function boot() {
    var form = document.getElementById("display-controls");
    if (!form) { return; }
    function names(select) { return Array.prototype.map.call(select.options, function (o) { return o.value; }); }
    INTERVALS = names(form.elements.interval);
    STRETCHES = names(form.elements.stretch);
    COLORMAPS = names(form.elements.cmap);
    var waited = 0;
    (function wait() {
      // viewer.js makes the viewer; wait for it rather than depend on script order
      if (window.imagexViewer) {
        start(form, window.imagexViewer);
      } else if ((waited += 50) < 20000) {
        setTimeout(wait, 50);
      }
    })();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
