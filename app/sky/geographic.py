"""What the browser needs to show longitude and latitude under the cursor on a map (a GeoTIFF), computed once
per image with pyproj from the affine transform and CRS the GeoTIFF reader recorded (`app.formats.geo`).

Longitude and latitude come as the sky's do: a grid of exact unit vectors (`app.sky.grid`), here of WGS 84
longitude and latitude as pyproj gives them (`Transformer` to EPSG:4326, always x = longitude first),
refined until the interpolation of app/static/sky.js stays within `TOLERANCE_DEGREES` of pyproj at every
check point. Unit vectors keep the antimeridian and the poles free of seams. Projected coordinates need no
grid: they are the affine transform of the pixel, so the description carries the transform with the CRS's
axis names and unit, and the page computes them exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from app.formats.geo import GeoGrid, geo_grid
from app.sky.grid import fit_grid, unit_vectors
from app.store.records import HeaderValue

TOLERANCE_DEGREES = 1e-7  # about a centimetre on the ground; the page shows 1e-6 degrees
_UNIT_SYMBOLS = {"metre": "m", "meter": "m", "kilometre": "km", "foot": "ft", "us survey foot": "ftUS"}


def lonlat_vectors(transformer: Any, grid: GeoGrid, height: int, xs: np.ndarray,
                   ys: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) of the WGS 84 longitude and latitude at 0-based pixel positions (astropy's: y up,
    the first pixel's centre at 0); NaN rows where the CRS places no point on Earth."""
    column, row = xs.ravel() + 0.5, height - 0.5 - ys.ravel()  # pixel edges from the top-left corner
    a, b, c, d, e, f = grid.affine
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        lon, lat = transformer.transform(a * column + b * row + c, d * column + e * row + f, errcheck=False)
    return unit_vectors(np.radians(np.asarray(lon, dtype=float)), np.radians(np.asarray(lat, dtype=float)))


def projected_axes(crs: Any, affine: tuple[float, ...]) -> dict[str, Any] | None:
    """How the page labels a projected CRS's coordinates: ["E", "N"] when its axes point east and north
    (GeoTIFF puts the easting first whatever the CRS's own axis order), else ["x", "y"]; the unit's symbol
    (its name when it has none here); decimals that resolve a tenth of a pixel. None when not projected."""
    if not crs.is_projected or not crs.axis_info:
        return None
    directions = {axis.direction.lower() for axis in crs.axis_info}
    names = ["E", "N"] if {"east", "north"} <= directions else ["x", "y"]
    unit_name = str(crs.axis_info[0].unit_name)
    a, b, _, d, e, _ = affine
    size = min(math.hypot(a, d), math.hypot(b, e))
    decimals = min(6, max(1, math.ceil(-math.log10(size)) + 1))
    return {"axes": names, "unit": _UNIT_SYMBOLS.get(unit_name.lower(), unit_name), "decimals": decimals}


def geographic_readout(header: Mapping[str, HeaderValue], width: int, height: int,
                       tolerance: float = TOLERANCE_DEGREES) -> dict[str, Any] | None:
    """The map part of the viewer's readout (JSON-ready), or None when the image has no known CRS and
    transform or the CRS places none of it on Earth: the grid (`width` ... `nodes` as the celestial one,
    with `max_error_degrees`), `affine` (x = a * column + b * row + c, y = d * column + e * row + f, columns
    and rows counting pixel edges from the top-left corner), `crs` (its name), `epsg` (or None) and
    `projected` (`projected_axes`, None for a geographic CRS, whose readout is longitude and latitude)."""
    from pyproj import Transformer

    grid = geo_grid(header, width, height)
    if grid is None:
        return None
    try:
        crs = grid.crs()
        transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        fit = fit_grid(partial(lonlat_vectors, transformer, grid, height), width, height, tolerance * 3600)
    except Exception:  # pyproj raises several kinds for a CRS it cannot transform
        return None
    fitted, error = fit.grid, fit.worst
    if not np.isfinite(fitted.nodes).any():
        return None
    flat = np.round(fitted.nodes, 12).reshape(-1)
    return {
        "width": width, "height": height, "nx": fitted.nx, "ny": fitted.ny,
        "nodes": [None if not math.isfinite(value) else float(value) for value in flat],
        "max_error_degrees": error / 3600,
        "affine": list(grid.affine), "crs": str(crs.name), "epsg": grid.epsg,
        "projected": projected_axes(crs, grid.affine),
    }
