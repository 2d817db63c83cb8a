// The histogram of the display controls: the pixel histogram of the plane shown (log(1 + count) bars, as
// the server counted it: /api/images/<id>/histogram) with the display's cuts, its low and high data values,
// as two vertical lines. A line is dragged with the pointer (a press anywhere takes the nearer line) or,
// focused, moved with the arrow keys (a bin a press; with Shift, PageUp or PageDown ten; Home and End the
// ends); the new cuts are handed to `onCuts(low, high)` when the drag ends or the keys rest. Built with
// DOM calls only: no markup from data.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var WIDTH = 512;
  var HEIGHT = 96;
  var KEY_REST = 400;  // ms after the last key press before the cuts are applied

  function element(name, attributes, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes || {}).forEach(function (key) { node.setAttribute(key, String(attributes[key])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  // A data value as the page shows it: whole numbers as they are, others to 6 significant digits.
  function formatCut(value) {
    if (typeof value !== "number" || !isFinite(value)) { return "\u2014"; }
    if (Number.isInteger(value) && Math.abs(value) < 1e15) { return String(value); }
    var magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e7) ? value.toExponential(4) : String(Number(value.toPrecision(6)));
  }

  function Histogram(fieldset, onCuts) {
    this.fieldset = fieldset;
    this.onCuts = onCuts;
    this.data = null;
    this.low = NaN;
    this.high = NaN;
    this.dragging = null;
    this.resting = null;
    this.before = null;
    var svg = this.svg = element("svg", {viewBox: "0 0 " + WIDTH + " " + HEIGHT, preserveAspectRatio: "none",
                                         "aria-labelledby": "histogram-title"});
    this.title = element("title", {id: "histogram-title"}, svg);
    this.bars = element("path", {"class": "bars", d: ""}, svg);
    // what lies outside the cuts (black or white whatever its value) is dimmed
    this.shades = {low: element("rect", {"class": "outside", x: 0, y: 0, width: 0, height: HEIGHT}, svg),
                   high: element("rect", {"class": "outside", x: WIDTH, y: 0, width: 0, height: HEIGHT}, svg)};
    this.lines = {low: this.cutLine(svg, "low", "Low cut"), high: this.cutLine(svg, "high", "High cut")};
    fieldset.querySelector(".histogram-plot").appendChild(svg);
    this.outputs = {low: fieldset.querySelector("output[name=cut_low]"),
                    high: fieldset.querySelector("output[name=cut_high]")};
    this.range = fieldset.querySelector(".histogram-range");
    this.listen();
  }

  Histogram.prototype.cutLine = function (svg, which, label) {
    var group = element("g", {"class": "cut cut-" + which, tabindex: 0, role: "slider", "aria-label": label + " (data value)",
                              "data-cut": which}, svg);
    element("line", {x1: 0, x2: 0, y1: 0, y2: HEIGHT}, group);
    element("line", {"class": "grip", x1: 0, x2: 0, y1: 0, y2: HEIGHT}, group);
    return group;
  };

  // The histogram of another plane, or the first one.
  Histogram.prototype.setData = function (data) {
    this.data = data;
    var counts = data.counts, n = counts.length;
    var top = Math.log1p(Math.max.apply(null, counts.concat([1])));
    var d = "M0 " + HEIGHT;
    for (var i = 0; i < n; i++) {
      var y = HEIGHT - (HEIGHT - 2) * Math.log1p(counts[i]) / top;
      d += "V" + y.toFixed(2) + "H" + ((i + 1) * WIDTH / n).toFixed(2);
    }
    this.bars.setAttribute("d", d + "V" + HEIGHT + "Z");
    var plane = data.plane > 0 ? " of plane " + (data.plane + 1) : "";
    this.title.textContent = "Histogram of the pixel values" + plane + " (log counts) from " + formatCut(data.lo) +
      " to " + formatCut(data.hi) + "; " + data.below + " sampled values below, " + data.above + " above";
    this.range.textContent = "values " + formatCut(data.lo) + " \u2026 " + formatCut(data.hi) + plane + ", log counts";
    ["low", "high"].forEach(function (which) {
      this.lines[which].setAttribute("aria-valuemin", String(data.lo));
      this.lines[which].setAttribute("aria-valuemax", String(data.hi));
    }, this);
    this.draw();
    this.fieldset.hidden = false;
  };

  Histogram.prototype.setCuts = function (low, high) {
    if (this.dragging || this.resting) { return; }  // the user's own move wins over an answer on its way
    this.low = low;
    this.high = high;
    this.draw();
  };

  Histogram.prototype.cuts = function () {
    return isFinite(this.low) && isFinite(this.high) ? {low: this.low, high: this.high} : null;
  };

  Histogram.prototype.draw = function () {
    ["low", "high"].forEach(function (which) {
      var value = this[which];
      this.outputs[which].value = formatCut(value);
      var group = this.lines[which];
      group.setAttribute("aria-valuenow", isFinite(value) ? String(value) : "");
      group.setAttribute("aria-valuetext", formatCut(value));
      var shade = this.shades[which];
      if (!this.data || !isFinite(value)) {
        group.setAttribute("visibility", "hidden");
        shade.setAttribute("width", "0");
        return;
      }
      group.setAttribute("visibility", "visible");
      // a cut outside the histogram's range is drawn at its edge
      var x = Math.min(Math.max(0, (value - this.data.lo) / (this.data.hi - this.data.lo)), 1) * WIDTH;
      group.setAttribute("transform", "translate(" + x.toFixed(2) + " 0)");
      shade.setAttribute("x", which === "low" ? "0" : x.toFixed(2));
      shade.setAttribute("width", (which === "low" ? x : WIDTH - x).toFixed(2));
    }, this);
  };

  // Values a drag or a key gives: rounded to about a thousandth of the histogram's range, and kept apart.
  Histogram.prototype.unit = function () {
    return Math.pow(10, Math.floor(Math.log10((this.data.hi - this.data.lo) / 1000)));
  };

  Histogram.prototype.place = function (which, value) {
    var unit = this.unit();
    value = Math.min(Math.max(value, this.data.lo), this.data.hi);
    value = Number((Math.round(value / unit) * unit).toPrecision(12));
    if (which === "low") {
      this.low = Math.min(value, Number((this.high - unit).toPrecision(12)));
    } else {
      this.high = Math.max(value, Number((this.low + unit).toPrecision(12)));
    }
    this.draw();
  };

  Histogram.prototype.valueAt = function (clientX) {
    var box = this.svg.getBoundingClientRect();
    var fraction = box.width > 0 ? (clientX - box.left) / box.width : 0;
    return this.data.lo + fraction * (this.data.hi - this.data.lo);
  };

  // Hand on the cuts when they moved since the drag or the key presses began.
  Histogram.prototype.commit = function () {
    clearTimeout(this.resting);
    this.resting = null;
    var before = this.before;
    this.before = null;
    if (this.cuts() && !(before && before.low === this.low && before.high === this.high)) {
      this.onCuts(this.low, this.high);
    }
  };

  Histogram.prototype.begin = function () {
    if (!this.before) { this.before = this.cuts(); }
  };

  Histogram.prototype.listen = function () {
    var self = this, svg = this.svg;
    svg.addEventListener("pointerdown", function (event) {
      if (!self.data || !self.cuts() || event.button !== 0) { return; }
      var value = self.valueAt(event.clientX);
      var hit = event.target.closest ? event.target.closest("[data-cut]") : null;
      var which = hit ? hit.getAttribute("data-cut")
        : Math.abs(value - self.low) <= Math.abs(value - self.high) ? "low" : "high";
      self.begin();
      self.dragging = which;
      svg.setPointerCapture(event.pointerId);
      self.lines[which].focus({preventScroll: true});
      if (!hit) { self.place(which, value); }
      event.preventDefault();
    });
    svg.addEventListener("pointermove", function (event) {
      if (self.dragging) { self.place(self.dragging, self.valueAt(event.clientX)); }
    });
    var end = function (event) {
      if (!self.dragging) { return; }
      self.dragging = null;
      if (svg.hasPointerCapture(event.pointerId)) { svg.releasePointerCapture(event.pointerId); }
      self.commit();
    };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    ["low", "high"].forEach(function (which) {
      self.lines[which].addEventListener("keydown", function (event) {
        if (!self.data || !self.cuts()) { return; }
        var bin = (self.data.hi - self.data.lo) / self.data.counts.length;
        var big = event.shiftKey ? 10 : 1;
        var steps = {ArrowLeft: -big, ArrowDown: -big, ArrowRight: big, ArrowUp: big, PageDown: -10, PageUp: 10};
        var value = self[which];
        if (event.key in steps) {
          value += steps[event.key] * bin;
        } else if (event.key === "Home") {
          value = self.data.lo;
        } else if (event.key === "End") {
          value = self.data.hi;
        } else {
          return;
        }
        event.preventDefault();
        event.stopPropagation();  // not the page's own keys (the plane slider's [ and ] are not these)
        self.begin();
        self.place(which, value);
        clearTimeout(self.resting);
        self.resting = setTimeout(function () { self.commit(); }, KEY_REST);
      });
    });
  };

  window.ImagexHistogram = Histogram;
  window.ImagexHistogram.formatCut = formatCut;
})();
