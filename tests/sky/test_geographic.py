"""The map readout against pyproj: the longitude/latitude grid of a GeoTIFF, interpolated in Python and by
the browser's own code (app/static/sky.js under node), gives every position within 1e-7 degrees of
pyproj's, for UTM, a geographic CRS across the antimeridian, a polar stereographic map over the pole, a
rotated Web Mercator transform and a CRS in US survey feet; the projected x/y the page computes is the
affine transform itself; the text the page shows; and no readout for what pyproj cannot place."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyproj import CRS, Transformer

from app.formats import GeoTiffReader
from app.formats.geo import geo_grid
from app.sky.geographic import TOLERANCE_DEGREES, geographic_readout, lonlat_vectors, projected_axes
from app.sky.grid import MAX_CELLS, Grid, separation_arcsec, unit_vectors
from app.sky.readout import sky_readout
from app.store.records import HeaderValue

SKY_JS = Path(__file__).resolve().parents[2] / "app" / "static" / "sky.js"
DATA = Path(__file__).resolve().parents[1] / "data" / "geotiff"
NODE = shutil.which("node")
# Runs sky.js's MapGrid as the page does, at image pixels (column, row) counted from the top-left.
RUN_MAP_JS = """
const sky = require(process.argv[1]);
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const job = JSON.parse(input);
  const map = new sky.MapGrid(job.description);
  process.stdout.write(JSON.stringify({
    lonlat: job.points.map(([column, row]) => map.lonLat(column, row)),
    xy: job.points.map(([column, row]) => map.projectedXY(column, row)),
    text: job.text.map(([column, row]) => map.text(column, row)),
    local: job.local.map(([x, y]) => map.grid.local(x, y)),
  }));
});
"""
TEXT = re.compile(r"lon (?P<lon>-?\d+\.\d{6})°, lat (?P<lat>-?\d+\.\d{6})°"
                  r"(?: · [ENxy] (?P<x>-?\d+\.\d+) (?P<unit>\w+), [ENxy] (?P<y>-?\d+\.\d+) \w+)?")


def run_map_js(description: dict[str, Any], points: np.ndarray, *, text: Any = (),
               local: Any = ()) -> dict[str, Any]:
    assert NODE is not None, "node is needed (it is installed with npm)"
    job = {"description": description, "points": points.tolist(), "text": list(text), "local": list(local)}
    done = subprocess.run([NODE, "-e", RUN_MAP_JS, str(SKY_JS)], input=json.dumps(job), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def reader_header(name: str) -> tuple[dict[str, HeaderValue], int, int]:
    """The header the GeoTIFF reader records for a GDAL-written fixture."""
    reader = GeoTiffReader(DATA / name, max_pixels=10**8)
    try:
        [plane] = reader.planes()
    finally:
        reader.close()
    return dict(plane.header), plane.width, plane.height


def scaled(epsg: int, scale: tuple[float, float], origin: tuple[float, float], **more: HeaderValue
           ) -> dict[str, HeaderValue]:
    return {"ModelPixelScale": f"{scale[0]} {scale[1]} 0",
            "ModelTiepoint": f"0 0 0 {origin[0]} {origin[1]} 0", "GeoEPSG": epsg, **more}


CASES: dict[str, tuple[dict[str, HeaderValue], int, int]] = {
    # name: (header, width, height)
    "gdal-utm33n": reader_header("elevation_utm33n.tif"),
    "gdal-wgs84": reader_header("rgb_wgs84.tif"),
    "utm-300km": (scaled(32633, (30.0, 30.0), (300000.0, 5900000.0)), 10000, 10000),
    "wgs84-antimeridian": (scaled(4326, (0.01, 0.01), (179.5, -16.0)), 100, 80),
    "polar-stereographic-pole": (scaled(3413, (1000.0, 1000.0), (-500000.0, 500000.0)), 1000, 1000),
    "rotated-web-mercator": ({"ModelTransformation": "10 2 0 1500000 1 -10 0 6000000 0 0 0 0 0 0 0 1",
                              "GeoEPSG": 3857}, 500, 400),
    "us-survey-feet": (scaled(2263, (3.0, 3.0), (1000000.0, 200000.0)), 300, 200),
    "pixel-is-point": (scaled(32618, (0.5, 0.5), (583000.0, 4507000.0), GTRasterTypeGeoKey=2), 640, 480),
}


def pyproj_lonlat(header: dict[str, HeaderValue], columns: np.ndarray, rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, x, y) of pixel-edge positions, straight from the header's transform and pyproj."""
    grid = geo_grid(header, 1, 1)
    assert grid is not None
    a, b, c, d, e, f = grid.affine
    x, y = a * columns + b * rows + c, d * columns + e * rows + f
    lon, lat = Transformer.from_crs(grid.crs(), "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat), x, y


def probe_pixels(width: int, height: int, count: int = 3000, seed: int = 5) -> np.ndarray:
    """Image pixels (column, row): corners, edges, the centre and random positions (some fractional)."""
    rng = np.random.default_rng(seed)
    points = [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1), (width // 2, height // 2),
              (-0.5, -0.5), (width - 0.5, height - 0.5)]
    rows, columns = (-0.5, 0, height - 1, height - 0.5), (-0.5, 0, width - 1, width - 0.5)
    points += [(x, y) for x in np.linspace(-0.5, width - 0.5, 25) for y in rows]
    points += [(x, y) for y in np.linspace(-0.5, height - 0.5, 25) for x in columns]
    whole = np.column_stack([rng.integers(0, width, count // 2), rng.integers(0, height, count // 2)])
    anywhere = np.column_stack([rng.uniform(-0.5, width - 0.5, count // 2),
                                rng.uniform(-0.5, height - 0.5, count // 2)])
    return np.vstack([np.array(points, dtype=float), whole, anywhere])


def angle_degrees(lon: np.ndarray, lat: np.ndarray, lon2: np.ndarray, lat2: np.ndarray) -> np.ndarray:
    first = unit_vectors(np.radians(lon), np.radians(lat))
    second = unit_vectors(np.radians(lon2), np.radians(lat2))
    return separation_arcsec(first, second) / 3600


@pytest.mark.parametrize("name", list(CASES))
def test_the_grid_gives_pyprojs_longitude_and_latitude_everywhere(name):
    header, width, height = CASES[name]
    description = geographic_readout(header, width, height)
    assert description is not None
    assert description["max_error_degrees"] <= TOLERANCE_DEGREES
    assert description["nx"] <= MAX_CELLS and description["ny"] <= MAX_CELLS
    nx, ny = description["nx"], description["ny"]
    grid = Grid(width, height, nx, ny, np.array(description["nodes"], dtype=float).reshape(ny + 3, nx + 3, 3))
    pixels = probe_pixels(width, height)
    columns, rows = pixels[:, 0], pixels[:, 1]
    lon, lat, x, y = pyproj_lonlat(header, columns + 0.5, rows + 0.5)
    # in Python: astropy's convention, y up
    found = grid.interpolate(columns, height - 1 - rows)
    exact = unit_vectors(np.radians(lon), np.radians(lat))
    assert (separation_arcsec(found, exact) / 3600).max() < 1.5 * TOLERANCE_DEGREES
    # in the browser's code, at image pixels
    out = run_map_js(description, pixels)
    assert all(item is not None for item in out["lonlat"]), "sky.js gave no position on the map"
    shown = np.array(out["lonlat"], dtype=float)
    assert ((shown[:, 0] >= -180) & (shown[:, 0] <= 180)).all()
    errors = angle_degrees(shown[:, 0], shown[:, 1], lon, lat)
    assert errors.max() < 1.5 * TOLERANCE_DEGREES, f"{name}: worst {errors.max():.3g} degrees"
    assert np.abs(shown[:, 1] - lat).max() < 1.5 * TOLERANCE_DEGREES
    # longitude itself, away from a pole where it means little
    away = np.abs(lat) < 89
    wrapped = (shown[away, 0] - lon[away] + 180) % 360 - 180
    assert (np.abs(wrapped) * np.cos(np.radians(lat[away]))).max() < 1.5 * TOLERANCE_DEGREES
    # the projected coordinates are the transform itself
    assert np.allclose(np.array(out["xy"], dtype=float), np.column_stack([x, y]), rtol=1e-15, atol=1e-9)


def test_the_cases_cross_the_antimeridian_and_hold_the_pole():
    header, width, height = CASES["wgs84-antimeridian"]
    lon, _, _, _ = pyproj_lonlat(header, np.array([0.0, width]), np.array([0.0, 0.0]))
    assert lon[0] < 180 and lon[1] > 180  # pyproj leaves the longitude beyond 180: the page wraps it
    shown = run_map_js(geographic_readout(header, width, height) or {}, np.array([[99.0, 0.0]]))["lonlat"]
    assert shown[0][0] == pytest.approx(lon[1] - 360 - 0.005, abs=1e-7)
    header, width, height = CASES["polar-stereographic-pole"]
    to_map = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
    x, y = to_map.transform(0.0, 90.0)
    assert -500000 < x < 500000 and -500000 < y < 500000


@pytest.mark.parametrize(("name", "pixel", "expected"), [
    # the centre of the top-left pixel of GDAL's UTM fixture: (500015, 5700885), as pyproj places it
    ("gdal-utm33n", (0, 0), "lon {lon}°, lat {lat}° · E 500015.0 m, N 5700885.0 m"),
    ("gdal-utm33n", (39, 29), "lon {lon}°, lat {lat}° · E 501185.0 m, N 5700015.0 m"),
    # a geographic CRS: longitude and latitude alone
    ("gdal-wgs84", (20, 15), "lon 13.410000°, lat 52.445000°"),
    ("us-survey-feet", (0, 0), "lon {lon}°, lat {lat}° · E 1000001.5 ftUS, N 199998.5 ftUS"),
    ("polar-stereographic-pole", (500, 500), "lon {lon}°, lat {lat}° · x 500.0 m, y -500.0 m"),
])
def test_the_text_the_page_shows(name, pixel, expected):
    header, width, height = CASES[name]
    description = geographic_readout(header, width, height)
    assert description is not None
    [text] = run_map_js(description, np.zeros((0, 2)), text=[list(pixel)])["text"]
    lon, lat, _, _ = pyproj_lonlat(header, np.array([pixel[0] + 0.5]), np.array([pixel[1] + 0.5]))
    match = TEXT.fullmatch(text)
    assert match, text
    # the digits shown are pyproj's, but where the grid's 1e-7 degrees carry a value across a rounding step
    shown = float(match["lon"]), float(match["lat"])
    assert shown == (pytest.approx(float(lon[0]), abs=6.5e-7), pytest.approx(float(lat[0]), abs=6.5e-7))
    assert text == expected.format(lon=match["lon"], lat=match["lat"])


def test_a_map_the_grid_cannot_follow_says_how_far_it_may_be_off():
    # Web Mercator from the equator to 85 degrees north in 100 pixels: latitude bends faster than any grid
    # of at most MAX_CELLS cells follows to 1e-7 degrees. The error is part of the description and the text.
    header = scaled(3857, (200000.0, 200000.0), (-10000000.0, 20000000.0))
    description = geographic_readout(header, 100, 100)
    assert description is not None and description["max_error_degrees"] > TOLERANCE_DEGREES
    [text] = run_map_js(description, np.zeros((0, 2)), text=[[50, 3]])["text"]
    pattern = r"lon -?\d+\.\d{6}°, lat \d+\.\d{6}° ±[\d.e-]+° · E -?\d+\.0 m, N \d+\.0 m"
    assert re.fullmatch(pattern, text), text


def test_the_compass_of_a_north_up_map_points_up_and_right():
    header, width, height = CASES["gdal-utm33n"]
    description = geographic_readout(header, width, height)
    assert description is not None
    [local] = run_map_js(description, np.zeros((0, 2)), local=[[19.5, 14.5]])["local"]
    # UTM grid north differs from true north by the meridian convergence: under a degree at 15 E, 51 N
    north, east = np.array(local["north"]), np.array(local["east"])
    assert north[1] > 0.999 and abs(north[0]) < 0.02
    assert east[0] > 0.999 and abs(east[1]) < 0.02


@pytest.mark.parametrize(("epsg", "expected"), [
    (32633, {"axes": ["E", "N"], "unit": "m", "decimals": 1}),
    (2263, {"axes": ["E", "N"], "unit": "ftUS", "decimals": 1}),
    (3413, {"axes": ["x", "y"], "unit": "m", "decimals": 1}),
    (4326, None),
])
def test_projected_axes(epsg, expected):
    assert projected_axes(CRS.from_epsg(epsg), (30.0, 0.0, 0.0, 0.0, -30.0, 0.0)) == expected
    fine = projected_axes(CRS.from_epsg(32633), (0.25, 0.0, 0.0, 0.0, -0.25, 0.0))
    assert fine is not None and fine["decimals"] == 2


def test_the_geographic_description_in_full():
    header, width, height = CASES["gdal-utm33n"]
    description = sky_readout(header, width, height)
    assert description["celestial"] is None
    assert description["physical"] == {"x": 30.0, "y": 30.0, "source": "PhysicalSizeX/PhysicalSizeY"}
    geographic = description["geographic"]
    assert geographic["affine"] == [30.0, 0.0, 500000.0, 0.0, -30.0, 5700900.0]
    assert (geographic["crs"], geographic["epsg"]) == ("WGS 84 / UTM zone 33N", 32633)
    assert (geographic["width"], geographic["height"]) == (width, height)
    assert len(geographic["nodes"]) == (geographic["nx"] + 3) * (geographic["ny"] + 3) * 3


@pytest.mark.parametrize("header", [
    {"NAXIS": 2, "CTYPE1": "RA---TAN"},  # not a map
    {**scaled(32633, (30.0, 30.0), (0.0, 0.0)), "GeoEPSG": 32767},  # user-defined without parameters
    {"ModelPixelScale": "30 30 0", "ModelTiepoint": "0 0 0 1 1 0"},  # no CRS at all
    {"GeoEPSG": 32633},  # no transform
])
def test_no_geographic_readout_without_a_known_crs_and_transform(header):
    assert geographic_readout(header, 40, 30) is None


def test_positions_off_the_earth_are_no_positions():
    # a geostationary view: beyond the Earth's limb pyproj gives inf, which the grid leaves undefined
    transformer = Transformer.from_crs(CRS.from_proj4("+proj=geos +h=35785831 +lon_0=0 +sweep=y"),
                                       "EPSG:4326", always_xy=True)
    grid = geo_grid(scaled(4326, (1.0, 1.0), (0.0, 0.0)), 1, 1)
    assert grid is not None
    limb = type(grid)((1e6, 0.0, -6e6, 0.0, -1e6, 6e6), None, "")
    vectors = lonlat_vectors(transformer, limb, 12, np.array([0.0, 6.0]), np.array([11.0, 6.0]))
    assert not np.isfinite(vectors[0]).any() and np.isfinite(vectors[1]).all()
