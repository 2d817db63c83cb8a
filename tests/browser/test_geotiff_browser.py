"""A GeoTIFF in the viewer, in headless Chromium against a real `imagex serve`: under the cursor the WGS 84
longitude/latitude pyproj gives for the pixel's centre and, for a projected CRS, its easting and northing;
never RA/Dec, no Galactic toggle, no go to; the compass points to north and the scale bar is in metres."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyproj import Transformer

from tests.browser.server_helpers import ingest_and_serve, screenshot
from tests.browser.viewer_helpers import FULLY_LOADED, Recorder, move_to_image_pixel

pytestmark = pytest.mark.browser

DATA = Path(__file__).resolve().parents[1] / "data" / "geotiff"
DESCRIBED = "() => document.getElementById('viewer').dataset.described === 'true'"
MAP_TEXT = re.compile(r"lon (?P<lon>-?\d+\.\d{6})°, lat (?P<lat>-?\d+\.\d{6})°"
                      r"(?: · E (?P<e>-?\d+\.\d) m, N (?P<n>-?\d+\.\d) m)?")
# GDAL's fixtures (tests/data/geotiff/README.md): 40 x 30 pixels; the edges of pixel (column, row) from the
# top-left corner in each CRS
WIDTH, HEIGHT = 40, 30
UTM_ORIGIN, UTM_PIXEL = (500000.0, 5700900.0), 30.0
WGS84_ORIGIN, WGS84_PIXEL = (13.0, 52.6), (0.02, 0.01)


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """(url, {"utm": image, "wgs84": image}) of a real `imagex serve` with the two GDAL GeoTIFFs."""
    root = tmp_path_factory.mktemp("maps")
    for name in ("elevation_utm33n.tif", "rgb_wgs84.tif"):
        shutil.copy(DATA / name, root / name)
    with ingest_and_serve(root, root / "elevation_utm33n.tif", root / "rgb_wgs84.tif") as server:
        listing = server.get("/api/images")["images"]
        images = {"utm" if item["name"].startswith("elevation") else "wgs84": item for item in listing}
        assert set(images) == {"utm", "wgs84"}
        yield server.url, images


async def open_map(page: Any, url: str, image: dict[str, Any]) -> Recorder:
    recorder = Recorder(page)
    response = await page.goto(url + image["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    await page.wait_for_function(DESCRIBED, timeout=30_000)
    return recorder


async def map_text_at(page: Any, column: int, row: int) -> re.Match[str]:
    """Hover image pixel (column, row) and read the map position the page shows for it."""
    await move_to_image_pixel(page, column + 0.5, row + 0.5)
    await page.wait_for_function("(text) => document.getElementById('readout').textContent === text",
                                 arg=f"x {column}, y {row}", timeout=30_000)
    await page.wait_for_function("(source) => new RegExp(source).test("
                                 "document.getElementById('readout-sky').textContent)",
                                 arg=MAP_TEXT.pattern.replace("(?P<", "(?<"), timeout=30_000)
    shown = str(await page.text_content("#readout-sky"))
    match = MAP_TEXT.fullmatch(shown)
    assert match, shown
    return match


def assert_lonlat(match: re.Match[str], lon: float, lat: float) -> None:
    # shown to 1e-6 degrees from a grid within 1e-7 degrees of pyproj
    assert float(match["lon"]) == pytest.approx(lon, abs=6.5e-7), (match.group(0), lon)
    assert float(match["lat"]) == pytest.approx(lat, abs=6.5e-7), (match.group(0), lat)


async def test_utm_map_reads_longitude_latitude_and_easting_northing_as_pyproj_does(page, maps):
    url, images = maps
    recorder = await open_map(page, url, images["utm"])
    assert await page.locator("#readout-galactic").count() == 0
    assert await page.locator("#goto").count() == 0
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    for column, row in ((0, 0), (WIDTH - 1, 0), (0, HEIGHT - 1), (WIDTH - 1, HEIGHT - 1), (17, 11), (5, 23)):
        match = await map_text_at(page, column, row)
        easting = UTM_ORIGIN[0] + UTM_PIXEL * (column + 0.5)
        northing = UTM_ORIGIN[1] - UTM_PIXEL * (row + 0.5)
        assert (match["e"], match["n"]) == (f"{easting:.1f}", f"{northing:.1f}")
        assert_lonlat(match, *to_lonlat.transform(easting, northing))
        assert "RA" not in match.group(0)
    await screenshot(page, "viewer-map-readout.png")
    # off the image everything clears (zoomed out, so that beside the image is still inside the viewer)
    await page.evaluate("""() => {
      const viewport = window.imagexViewer.viewport;
      viewport.zoomTo(viewport.getHomeZoom() / 2, null, true);
    }""")
    await move_to_image_pixel(page, -3, HEIGHT / 2)
    await page.wait_for_function("() => document.getElementById('readout-sky').textContent === ''")
    assert not recorder.errors, recorder.errors


async def test_geographic_map_reads_longitude_and_latitude_alone(page, maps):
    url, images = maps
    recorder = await open_map(page, url, images["wgs84"])
    assert await page.locator("#readout-galactic").count() == 0
    for column, row in ((0, 0), (WIDTH - 1, HEIGHT - 1), (20, 15), (33, 4)):
        match = await map_text_at(page, column, row)
        assert match["e"] is None, "a geographic CRS has no projected coordinates to show"
        lon = WGS84_ORIGIN[0] + WGS84_PIXEL[0] * (column + 0.5)
        lat = WGS84_ORIGIN[1] - WGS84_PIXEL[1] * (row + 0.5)
        assert_lonlat(match, lon, lat)  # the CRS is WGS 84 itself: the transform gives them
    assert not recorder.errors, recorder.errors


async def test_map_compass_points_north_and_the_scale_bar_is_in_metres(page, maps):
    url, images = maps
    recorder = await open_map(page, url, images["utm"])
    for zoom in (2.0, 8.0):
        await page.evaluate("""(zoom) => {
          const viewer = window.imagexViewer;
          viewer.viewport.zoomTo(viewer.world.getItemAt(0).imageToViewportZoom(zoom), null, true);
        }""", zoom)
        await page.wait_for_timeout(200)
        label = str(await page.text_content("#scale-bar .scale-bar-label"))
        match = re.fullmatch(r"(?P<value>[\d.]+) (?P<unit>m|km)", label)
        assert match, label
        metres = float(match["value"]) * {"m": 1.0, "km": 1000.0}[match["unit"]]
        width = await page.evaluate(
            "() => document.querySelector('#scale-bar .scale-bar-line').getBoundingClientRect().width")
        assert width == pytest.approx(metres / UTM_PIXEL * zoom, rel=0.02), (label, width)
    # at 15 E, UTM zone 33's central meridian, grid north is true north: up, and east to the right
    assert await page.locator("#compass").is_visible()
    boxes = await page.evaluate("""() => {
      const box = (selector) => document.querySelector(selector).getBoundingClientRect();
      const mid = (b) => [b.left + b.width / 2, b.top + b.height / 2];
      return {centre: mid(box("#compass")), north: mid(box("#compass .compass-north polygon")),
              east: mid(box("#compass .compass-east polygon"))};
    }""")
    centre, north, east = (np.array(boxes[name]) for name in ("centre", "north", "east"))
    assert north[1] < centre[1] - 15 and abs(north[0] - centre[0]) < 3
    assert east[0] > centre[0] + 15 and abs(east[1] - centre[1]) < 3
    assert not recorder.errors, recorder.errors
