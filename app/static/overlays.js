// What the image page and the mosaic share over OpenSeadragon: the sky text under the cursor, the scale
// bar and compass, and the go-to form. Each page says how its own frame maps to the screen; the drawing,
// wording and requests are written once here. Needs sky.js (window.ImagexSky) and OpenSeadragon.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attributes) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attributes).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    return node;
  }

  function signed(value, decimals) {
    return (value < 0 ? "-" : "+") + Math.abs(value).toFixed(decimals);
  }

  // " ±0.3″": what the grid's rough cells (`celestial.rough`, where it could not follow its projection
  // within its tolerance) may be off by, shown after a position read from one of them.
  function roughness(celestial) {
    var worst = celestial ? Number(celestial.rough_error_arcsec) : 0;
    return worst > 0.02 ? " \u00b1" + (worst < 60 ? worst.toPrecision(2) + "\u2033" : (worst / 60).toPrecision(2) + "\u2032") : "";
  }

  // A position as the readout shows it: `lonLat` ICRS [ra, dec] or Galactic [l, b] degrees, or null.
  function positionText(lonLat, galactic, rough) {
    if (!lonLat) { return "no sky position"; }
    if (galactic) {
      return "l " + lonLat[0].toFixed(6) + "\u00b0, b " + signed(lonLat[1], 6) + "\u00b0" + rough;
    }
    return "RA " + ImagexSky.formatRa(lonLat[0]) + ", Dec " + ImagexSky.formatDec(lonLat[1]) +
      " (" + lonLat[0].toFixed(6) + "\u00b0, " + signed(lonLat[1], 6) + "\u00b0)" + rough;
  }

  // The sky position at astropy pixel (ax, ay) of `grid` (an ImagexSky.Grid), as the readout shows it;
  // `rough` (from `roughness`) follows it where the grid's cell is rough.
  function skyText(grid, ax, ay, galactic, rough) {
    return positionText(galactic ? grid.galactic(ax, ay) : grid.sky(ax, ay), galactic,
                        grid.isRough(ax, ay) ? rough : "");
  }

  // The scale bar and compass, added to `viewer` as controls when it opens. `draw(local, units, perPixel,
  // zoom, angle)`: `local` as ImagexSky's Grid.local gives it (or null: no compass), `units` a unit table
  // and `perPixel` its size of one frame pixel (null: no bar), `zoom` screen pixels per frame pixel and
  // `angle(direction)` the screen angle (degrees clockwise from up) of a frame direction (x right, y up).
  function ScaleAndCompass(viewer) {
    var bar = document.createElement("div");
    bar.className = "scale-bar";
    bar.id = "scale-bar";
    var barLine = document.createElement("div");
    barLine.className = "scale-bar-line";
    var barLabel = document.createElement("span");
    barLabel.className = "scale-bar-label";
    bar.appendChild(barLine);
    bar.appendChild(barLabel);
    bar.hidden = true;
    var compass = svg("svg", { "class": "compass", id: "compass", viewBox: "-40 -40 80 80", width: "80", height: "80",
      role: "img", "aria-label": "compass: north and east" });
    var arrows = {};
    [["N", "north"], ["E", "east"]].forEach(function (pair) {
      var group = svg("g", { "class": "compass-" + pair[1] });
      group.appendChild(svg("line", { x1: "0", y1: "0", x2: "0", y2: "-24" }));
      group.appendChild(svg("polygon", { points: "0,-30 -4,-22 4,-22" }));
      var label = svg("text", { x: "0", y: "-31", "text-anchor": "middle" });
      label.textContent = pair[0];
      group.appendChild(label);
      compass.appendChild(group);
      arrows[pair[1]] = { group: group, label: label };
    });
    compass.style.display = "none";
    this.bar = bar;
    this.compass = compass;
    this.draw = function (local, units, perPixel, zoom, angle) {
      if (units && perPixel > 0 && zoom > 0) {
        // at most 150 screen pixels long
        var nice = ImagexSky.niceLength(150 * perPixel / zoom, units);
        if (nice) {
          bar.hidden = false;
          barLine.style.width = (nice.size / perPixel * zoom).toFixed(1) + "px";
          barLabel.textContent = String(nice.value) + (units === ImagexSky.LENGTH_UNITS ? " " : "") + nice.unit;
        }
      } else {
        bar.hidden = true;
      }
      if (!local) { compass.style.display = "none"; return; }
      compass.style.display = "";
      [["north", local.north], ["east", local.east]].forEach(function (pair) {
        var turn = angle(pair[1]);
        arrows[pair[0]].group.setAttribute("transform", "rotate(" + turn.toFixed(2) + ")");
        arrows[pair[0]].label.setAttribute("transform", "rotate(" + (-turn).toFixed(2) + " 0 -35)");
      });
      compass.dataset.north = local.north.map(function (v) { return v.toFixed(4); }).join(",");
      compass.dataset.east = local.east.map(function (v) { return v.toFixed(4); }).join(",");
    };
    viewer.addControl(bar, { anchor: OpenSeadragon.ControlAnchor.BOTTOM_LEFT, autoFade: false });
    viewer.addControl(compass, { anchor: OpenSeadragon.ControlAnchor.TOP_LEFT, autoFade: false });
  }

  // The go-to form: asks `url` (an image's or a mosaic's locate) and hands the answer (FITS x, y of the
  // frame) to `place`, which pans there and returns the viewport point; a ring marks it until the next.
  function goTo(viewer, form, message, url, place) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var query = new URLSearchParams(new FormData(form));
      // an object name, or a position: whichever was typed (a name when both were)
      if ((query.get("name") || "").trim()) { query.delete("ra"); query.delete("dec"); } else { query.delete("name"); }
      message.textContent = "\u2026";
      message.className = "";
      fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + query.toString(), { headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.json().then(function (body) { return { ok: response.ok, body: body }; });
        })
        .then(function (answer) {
          if (!answer.ok) {
            message.className = "error";
            message.textContent = answer.body.error || "that position could not be placed";
            return;
          }
          var location = place(answer.body);
          viewer.viewport.panTo(location);
          var marker = document.getElementById("goto-marker");
          if (marker) { viewer.removeOverlay(marker); }
          marker = document.createElement("div");
          marker.id = "goto-marker";
          marker.className = "goto-marker";
          viewer.addOverlay({ element: marker, location: location, placement: OpenSeadragon.Placement.CENTER });
          message.textContent = (answer.body.name ? answer.body.name + ", the centre of " + answer.body.from.name + ": " : "") +
            "centred on RA " + ImagexSky.formatRa(answer.body.ra) + ", Dec " +
            ImagexSky.formatDec(answer.body.dec) + " (FITS x " + answer.body.x.toFixed(1) + ", y " + answer.body.y.toFixed(1) + ")";
          marker.title = message.textContent;
        })
        .catch(function () {
          message.className = "error";
          message.textContent = "the server did not answer; try again";
        });
    });
  }

  window.ImagexOverlays = {
    roughness: roughness, skyText: skyText, positionText: positionText, ScaleAndCompass: ScaleAndCompass, goTo: goTo, signed: signed
  };
})();
