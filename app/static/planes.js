// The plane slider of an image with planes (a cube, a series), shared by the image page (display.js) and
// the embed page (mosaic.js): a range input `plane` (from 0), an output `plane_label` ("3 of 40: FREQ
// 1.4209 GHz"), a Play/Pause button `play`; keys [ and ] step; the plane is kept in the page URL (`plane`,
// counted from 1, left out for the first). What a plane change shows is the page's business: `onChange`.
(function () {
  "use strict";

  var PLAY_MS = 800;

  // A plane's coordinate with a readable prefix for the spectral units WCS uses (Hz, m, m/s).
  var PREFIXES = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "\u00b5"], [1e-9, "n"]];
  function formatCoordinate(value, unit) {
    var magnitude = Math.abs(value);
    if ((unit === "Hz" || unit === "m" || unit === "m/s") && magnitude > 0) {
      for (var i = 0; i < PREFIXES.length; i++) {
        if (magnitude >= PREFIXES[i][0] * 0.9999999 || i === PREFIXES.length - 1) {
          return String(Number((value / PREFIXES[i][0]).toPrecision(8))) + " " + PREFIXES[i][1] + unit;
        }
      }
    }
    var number = magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6) ? value.toExponential(6) : String(Number(value.toPrecision(8)));
    return number + (unit ? " " + unit : "");
  }

  // "3 of 40: FREQ 1.420425e+9 Hz" for plane index 2 of a cube whose WCS places its planes
  function label(planes, index) {
    var text = (index + 1) + " of " + planes.count;
    var values = planes.values, labels = planes.labels;
    if (labels && typeof labels[index] === "string" && labels[index]) {
      text += ": " + labels[index];
    } else if (values && typeof values[index] === "number") {
      text += ": " + (planes.axis ? planes.axis + " " : "") + formatCoordinate(values[index], planes.unit || "");
    }
    return text;
  }

  // The plane (from 0) the page URL asks for (past the last: the last); 0 when it names none.
  function asked(planes) {
    var number = Number(new URLSearchParams(window.location.search).get("plane"));
    return Number.isInteger(number) && number > 1 ? Math.min(number, planes.count) - 1 : 0;
  }

  // Wire the controls inside `box` for `planes`: `onChange(index, label)` after each change of plane.
  // Returns {set(index), plane()}; the controls start at plane 0, labelled, without calling onChange.
  function control(box, planes, onChange) {
    var slider = box.querySelector("input[name=plane]");
    var output = box.querySelector("output[name=plane_label]");
    var play = box.querySelector("button[name=play]");
    var plane = 0;
    var playing = null;

    function draw(index) {
      slider.value = String(index);
      output.value = label(planes, index);
    }

    function set(index) {
      index = Math.min(Math.max(0, index), planes.count - 1);
      plane = index;
      draw(index);
      var url = new URL(window.location.href);
      if (index === 0) { url.searchParams.delete("plane"); } else { url.searchParams.set("plane", String(index + 1)); }
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
      onChange(index, label(planes, index));
    }

    function stop() {
      if (playing) { clearInterval(playing); playing = null; }
      if (play) {
        play.textContent = "Play";
        play.setAttribute("aria-pressed", "false");
      }
    }

    slider.addEventListener("input", function (event) {
      event.stopPropagation();
      set(Number(slider.value));
    });
    if (play) {
      play.addEventListener("click", function () {
        if (playing) { stop(); return; }
        play.textContent = "Pause";
        play.setAttribute("aria-pressed", "true");
        playing = setInterval(function () { set((plane + 1) % planes.count); }, PLAY_MS);
      });
    }
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      // not while typing (a range or a box takes no text: the keys work there too)
      var typing = target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
        (target.tagName === "INPUT" && target.type !== "range" && target.type !== "checkbox"));
      if (typing) { return; }
      if (event.key === "]") { stop(); set(plane + 1); }
      if (event.key === "[") { stop(); set(plane - 1); }
    });
    draw(0);
    return { set: set, plane: function () { return plane; } };
  }

  window.ImagexPlanes = { label: label, formatCoordinate: formatCoordinate, asked: asked, control: control };
})();
