// Sky coordinates under the cursor: interpolates the grid of exact ICRS unit vectors that
// app/sky/readout.py computes with astropy (Catmull-Rom in x and y, then normalised), and formats the
// result; on a map (a GeoTIFF), the same grid of WGS 84 longitude/latitude from app/sky/geographic.py
// (pyproj) and the projected coordinates from the map's affine transform. Plain JS with no DOM: the browser loads it as window.ImagexSky, node as a module, so the tests
// can run this very file against astropy.
(function (root, factory) {
  "use strict";
  var sky = factory();
  if (typeof module === "object" && module.exports) { module.exports = sky; } else { root.ImagexSky = sky; }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var DEG = 180 / Math.PI;
  var ARCSEC = Math.PI / (180 * 3600);

  function weights(t) {
    var t2 = t * t, t3 = t2 * t;
    return [(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2];
  }

  // A grid description (the "celestial" part of /api/images/<id>/readout): positions are 0-based pixels
  // as astropy counts them (x right, y up, first pixel's centre at 0).
  function Grid(description) {
    this.width = description.width;
    this.height = description.height;
    this.nx = description.nx;
    this.ny = description.ny;
    this.columns = description.nx + 3;
    this.nodes = description.nodes;
    this.galacticMatrix = description.galactic;
    this.stepX = this.width / this.nx;
    this.stepY = this.height / this.ny;
    // cells (j * nx + i) where the interpolation strays past the tolerance, near where the projection ends:
    // their positions are asked of the server, or shown with the error the grid reached there
    var rough = {};
    (description.rough || []).forEach(function (index) { rough[index] = true; });
    this.roughCells = rough;
    this.roughError = Number(description.rough_error_arcsec) || 0;
  }

  // The cell holding pixel (x, y): [i, j, tx, ty] with the position's fractions across it.
  Grid.prototype.cell = function (x, y) {
    var u = (x + 0.5) / this.stepX, v = (y + 0.5) / this.stepY;
    var ci = Math.min(Math.max(Math.floor(u), 0), this.nx - 1);
    var cj = Math.min(Math.max(Math.floor(v), 0), this.ny - 1);
    return [ci, cj, u - ci, v - cj];
  };

  // Whether the grid cannot give pixel (x, y)'s position within its tolerance.
  Grid.prototype.isRough = function (x, y) {
    var cell = this.cell(x, y);
    return this.roughCells[cell[1] * this.nx + cell[0]] === true;
  };

  // The node's value, or NaN when the projection gives no position there (null in JSON).
  Grid.prototype.node = function (j, i, k) {
    var value = this.nodes[(j * this.columns + i) * 3 + k];
    return value === null ? NaN : value;
  };

  // The ICRS unit vector at pixel (x, y), or null where the grid gives none.
  Grid.prototype.vector = function (x, y) {
    var cell = this.cell(x, y), ci = cell[0], cj = cell[1], tx = cell[2], ty = cell[3];
    var wx = weights(tx), wy = weights(ty);
    var out = [0, 0, 0], a, b, k;
    for (a = 0; a < 4; a++) {
      for (b = 0; b < 4; b++) {
        for (k = 0; k < 3; k++) { out[k] += wy[a] * wx[b] * this.node(cj + a, ci + b, k); }
      }
    }
    if (!(isFinite(out[0]) && isFinite(out[1]) && isFinite(out[2]))) {
      // next to where the projection ends: the inner four nodes alone, bilinearly
      for (k = 0; k < 3; k++) {
        out[k] = (1 - ty) * (1 - tx) * this.node(cj + 1, ci + 1, k) + (1 - ty) * tx * this.node(cj + 1, ci + 2, k)
          + ty * (1 - tx) * this.node(cj + 2, ci + 1, k) + ty * tx * this.node(cj + 2, ci + 2, k);
      }
      if (!(isFinite(out[0]) && isFinite(out[1]) && isFinite(out[2]))) { return null; }
    }
    var norm = Math.sqrt(out[0] * out[0] + out[1] * out[1] + out[2] * out[2]);
    if (!(norm > 0)) { return null; }
    return [out[0] / norm, out[1] / norm, out[2] / norm];
  };

  function angles(vector) {
    var lon = Math.atan2(vector[1], vector[0]) * DEG;
    if (lon < 0) { lon += 360; }
    if (lon >= 360) { lon -= 360; }
    return [lon, Math.atan2(vector[2], Math.sqrt(vector[0] * vector[0] + vector[1] * vector[1])) * DEG];
  }

  // [ra, dec] in ICRS degrees at pixel (x, y), or null.
  Grid.prototype.sky = function (x, y) {
    var vector = this.vector(x, y);
    return vector ? angles(vector) : null;
  };

  // [l, b] in Galactic degrees at pixel (x, y), or null.
  Grid.prototype.galactic = function (x, y) {
    var vector = this.vector(x, y);
    if (!vector) { return null; }
    var m = this.galacticMatrix, rotated = [0, 0, 0];
    for (var r = 0; r < 3; r++) {
      rotated[r] = m[r][0] * vector[0] + m[r][1] * vector[1] + m[r][2] * vector[2];
    }
    return angles(rotated);
  };

  // The sky around pixel (x, y): arcsec per pixel, and the pixel directions [dx, dy] (x right, y up, unit
  // length) in which north and east lie. Null at a pole or where the grid gives no position.
  Grid.prototype.local = function (x, y) {
    var d = Math.max(1, Math.min(this.width, this.height) / 200);
    var centre = this.vector(x, y), right = this.vector(x + d, y), up = this.vector(x, y + d);
    if (!centre || !right || !up) { return null; }
    var ra = Math.atan2(centre[1], centre[0]);
    var dec = Math.atan2(centre[2], Math.sqrt(centre[0] * centre[0] + centre[1] * centre[1]));
    if (Math.cos(dec) < 1e-9) { return null; }
    var east = [-Math.sin(ra), Math.cos(ra), 0];
    var north = [-Math.sin(dec) * Math.cos(ra), -Math.sin(dec) * Math.sin(ra), Math.cos(dec)];
    function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
    function minus(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
    // sky offsets (east, north) in radians per pixel along x and along y
    var dxe = dot(minus(right, centre), east) / d, dxn = dot(minus(right, centre), north) / d;
    var dye = dot(minus(up, centre), east) / d, dyn = dot(minus(up, centre), north) / d;
    var det = dxe * dyn - dye * dxn;
    if (!isFinite(det) || det === 0) { return null; }
    // the pixel step that moves one unit east (1, 0) or north (0, 1) on the sky
    function direction(e, n) {
      var px = (dyn * e - dye * n) / det, py = (-dxn * e + dxe * n) / det;
      var length = Math.sqrt(px * px + py * py);
      return [px / length, py / length];
    }
    return { arcsecPerPixel: Math.sqrt(Math.abs(det)) / ARCSEC, north: direction(0, 1), east: direction(1, 0) };
  };

  function pad(number, width) {
    var text = String(number);
    while (text.length < width) { text = "0" + text; }
    return text;
  }

  // Sexagesimal with `decimals` digits after the seconds' point, from a count of units of the last digit
  // rounded once (so 59.9999 s carries into the minutes instead of showing 60).
  function sexagesimal(value, decimals, degreesWidth) {
    var scale = Math.pow(10, decimals);
    var units = Math.round(Math.abs(value) * 3600 * scale);
    var fraction = units % scale, seconds = Math.floor(units / scale);
    var text = pad(Math.floor(seconds / 3600), degreesWidth) + ":" + pad(Math.floor(seconds / 60) % 60, 2) + ":" +
      pad(seconds % 60, 2);
    return decimals ? text + "." + pad(fraction, decimals) : text;
  }

  // RA in hours, minutes and seconds: "10:00:24.000".
  function formatRa(degrees) {
    var text = sexagesimal(((degrees % 360) + 360) % 360 / 15, 3, 2);
    return text.indexOf("24:") === 0 ? "00" + text.slice(2) : text;
  }

  // Dec with its sign in degrees, minutes and seconds: "+02:12:00.00".
  function formatDec(degrees) {
    return (degrees < 0 ? "-" : "+") + sexagesimal(degrees, 2, 2);
  }

  // A round length (1, 2 or 5 times a power of ten) no longer than `most`, in the largest unit of the
  // table [[name, size in base units], ...] (small to large) that it reaches; returns {value, unit, size}.
  function niceLength(most, units) {
    var best = null;
    for (var u = 0; u < units.length; u++) {
      var inUnit = most / units[u][1];
      if (inUnit < 1 && u > 0) { continue; }
      var power = Math.pow(10, Math.floor(Math.log10(inUnit)));
      var value = [5, 2, 1].map(function (m) { return m * power; }).filter(function (v) { return v <= inUnit; })[0];
      best = { value: value, unit: units[u][0], size: value * units[u][1] };
      if (units[u + 1] === undefined || most / units[u + 1][1] < 1) { break; }
    }
    return best;
  }

  var ANGLE_UNITS = [["\u2033", 1], ["\u2032", 60], ["\u00b0", 3600]];
  var LENGTH_UNITS = [["nm", 1e-9], ["\u00b5m", 1e-6], ["mm", 1e-3], ["m", 1], ["km", 1e3]];

  // A number with `decimals` digits, never "-0.000" for what rounds to zero.
  function fixed(value, decimals) {
    var text = value.toFixed(decimals);
    return /^-[0.]+$/.test(text) ? text.slice(1) : text;
  }

  // A map's description (the "geographic" part of /api/images/<id>/readout). Positions here are image
  // pixels as the page counts them for a non-FITS image: column and row from 0 at the top-left, and what is
  // shown is the pixel's centre.
  function MapGrid(description) {
    this.grid = new Grid(description);
    this.affine = description.affine;
    this.projected = description.projected || null;
    this.maxError = Number(description.max_error_degrees) || 0;
  }

  // [longitude, latitude] in WGS 84 degrees (longitude from -180 to 180) at the centre of a pixel, or null.
  MapGrid.prototype.lonLat = function (column, row) {
    var position = this.grid.sky(column, this.grid.height - 1 - row);
    if (!position) { return null; }
    return [position[0] > 180 ? position[0] - 360 : position[0], position[1]];
  };

  // [x, y] in the map's CRS at the centre of a pixel: the affine transform of its edges' coordinates.
  MapGrid.prototype.projectedXY = function (column, row) {
    var a = this.affine, i = column + 0.5, j = row + 0.5;
    return [a[0] * i + a[1] * j + a[2], a[3] * i + a[4] * j + a[5]];
  };

  // "lon 15.000216°, lat 51.459140°", then for a projected CRS " · E 500015.0 m, N 5700885.0 m"; with
  // " ±…°" when the grid could not follow the CRS within half the last digit shown.
  MapGrid.prototype.text = function (column, row) {
    var lonLat = this.lonLat(column, row);
    var text = lonLat ? "lon " + fixed(lonLat[0], 6) + "\u00b0, lat " + fixed(lonLat[1], 6) + "\u00b0" +
      (this.maxError > 5e-7 ? " \u00b1" + this.maxError.toPrecision(2) + "\u00b0" : "") : "no longitude/latitude";
    if (this.projected) {
      var xy = this.projectedXY(column, row), p = this.projected, unit = p.unit ? " " + p.unit : "";
      text += " \u00b7 " + p.axes[0] + " " + fixed(xy[0], p.decimals) + unit + ", " + p.axes[1] + " " +
        fixed(xy[1], p.decimals) + unit;
    }
    return text;
  };

  return {
    Grid: Grid, MapGrid: MapGrid, formatRa: formatRa, formatDec: formatDec, niceLength: niceLength,
    ANGLE_UNITS: ANGLE_UNITS, LENGTH_UNITS: LENGTH_UNITS
  };
});
