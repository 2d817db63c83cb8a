"""The single-image viewer in headless Chromium against a real `imagex serve`: the readout under the cursor
(FITS x/y, value, RA/Dec and Galactic as astropy gives them), the view kept in the URL and restored from
it, go to RA/Dec, the scale bar and the compass."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
from astropy.coordinates import Angle, SkyCoord

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.conftest import SIZE, Server
from tests.browser.test_viewer_browser import FULLY_LOADED, Recorder, move_to_image_pixel, open_viewer

pytestmark = pytest.mark.browser

SKY_TEXT = re.compile(r"RA (?P<ra>\d\d:\d\d:\d\d\.\d{3}), Dec (?P<dec>[+-]\d\d:\d\d:\d\d\.\d\d) "
                      r"\((?P<ra_deg>\d+\.\d{6})°, (?P<dec_deg>[+-]\d+\.\d{6})°\)")
GALACTIC_TEXT = re.compile(r"l (?P<l>\d+\.\d{6})°, b (?P<b>[+-]\d+\.\d{6})°")
# The view centre in FITS pixels and the zoom in screen pixels per image pixel, as the page sees them.
VIEW = """() => {
  const viewer = window.imagexViewer, item = viewer.world.getItemAt(0);
  const centre = item.viewportToImageCoordinates(viewer.viewport.getCenter(true));
  return {x: centre.x + 0.5, y: item.getContentSize().y - centre.y + 0.5,
          zoom: item.viewportToImageZoom(viewer.viewport.getZoom(true))};
}"""
# No animation under way (the current view is the target) and every tile of it drawn.
SETTLED = """() => {
  const viewer = window.imagexViewer, viewport = viewer && viewer.viewport;
  return !!viewer && viewer.world.getItemCount() > 0 && !viewer.world.needsDraw() &&
    viewport.getCenter(true).distanceTo(viewport.getCenter(false)) < 1e-9 &&
    Math.abs(viewport.getZoom(true) - viewport.getZoom(false)) < 1e-9 &&
    viewer.world.getItemAt(0).getFullyLoaded();
}"""


def field_wcs() -> Any:
    return celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)


def pixel_route(server: Server) -> str:
    """The render helper's pixel value route for FITS pixel (11, 580), that is image pixel (10, 19)."""
    return server.image["dzi_url"].removesuffix("image.dzi") + "pixel/10_19"


def pixel_route_status(server: Server) -> int:
    try:
        with urllib.request.urlopen(server.url + pixel_route(server), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def sky_text(page: Any, pattern: re.Pattern[str]) -> re.Match[str]:
    await page.wait_for_function("(source) => new RegExp(source).test("
                                 "document.getElementById('readout-sky').textContent)",
                                 arg=pattern.pattern.replace("(?P<", "(?<"), timeout=5_000)
    match = pattern.fullmatch(str(await page.text_content("#readout-sky")))
    assert match, await page.text_content("#readout-sky")
    return match


async def test_readout_shows_fits_pixel_and_sky_position_as_astropy_does(page, server):
    recorder = await open_viewer(page, server)
    wcs = field_wcs()
    for column, row in ((10, 20), (SIZE - 1, 0), (0, SIZE - 1), (317, 143)):
        await move_to_image_pixel(page, column + 0.5, row + 0.5)
        fits_x, fits_y = column + 1, SIZE - row
        await page.wait_for_function("(text) => document.getElementById('readout').textContent === text",
                                     arg=f"x {fits_x}, y {fits_y}", timeout=5_000)
        match = await sky_text(page, SKY_TEXT)
        expected = wcs.pixel_to_world(fits_x - 1, fits_y - 1).icrs
        decimal = SkyCoord(float(match["ra_deg"]), float(match["dec_deg"]), unit="deg")
        sexagesimal = SkyCoord(Angle(match["ra"], unit="hourangle"), Angle(match["dec"], unit="deg"))
        # the display rounds to 1e-6 degrees (0.0036") and 0.001 s / 0.01": well inside 0.1"
        assert decimal.separation(expected).arcsec < 0.1, (match.group(0), expected)
        assert sexagesimal.separation(expected).arcsec < 0.1, (match.group(0), expected)

    await page.check("#readout-galactic")
    match = await sky_text(page, GALACTIC_TEXT)
    expected = wcs.pixel_to_world(317, SIZE - 1 - 143).galactic
    shown = SkyCoord(float(match["l"]), float(match["b"]), unit="deg", frame="galactic")
    assert shown.separation(expected).arcsec < 0.1
    await page.uncheck("#readout-galactic")
    await sky_text(page, SKY_TEXT)

    # off the image everything clears
    await move_to_image_pixel(page, -40, SIZE / 2)
    await page.wait_for_function("() => document.getElementById('readout-sky').textContent === ''")
    assert await page.text_content("#readout-value") == ""
    assert not recorder.errors, recorder.errors


async def test_readout_value_degrades_to_a_dash_without_the_pixel_route(page, server):
    if pixel_route_status(server) != 404:
        pytest.skip("the pixel route answers: test_readout_shows_the_pixel_value covers it")
    await open_viewer(page, server)
    await move_to_image_pixel(page, 10.5, 19.5)
    await page.wait_for_function(
        "() => document.getElementById('readout-value').textContent === 'value \u2014'", timeout=5_000)
    await sky_text(page, SKY_TEXT)


async def test_readout_shows_the_pixel_value(page, server):
    if pixel_route_status(server) == 404:
        pytest.skip("GET /tiles/<image_id>/<token>/pixel/<x>_<y> (the render helper's pixel value route) "
                    "is not in this branch yet")
    data = star_field(field_wcs(), SIZE, SIZE)
    await open_viewer(page, server)
    for column, row in ((10, 19), (250, 300)):
        await move_to_image_pixel(page, column + 0.5, row + 0.5)
        await page.wait_for_function(
            "(text) => document.getElementById('readout').textContent === text",
            arg=f"x {column + 1}, y {SIZE - row}", timeout=5_000)
        await page.wait_for_function(
            "() => /^value [-0-9.e+]+$/.test(document.getElementById('readout-value').textContent)",
            timeout=5_000)
        shown = float(str(await page.text_content("#readout-value")).removeprefix("value "))
        assert shown == pytest.approx(float(data[SIZE - 1 - row, column]), rel=1e-6)


async def test_view_in_the_url_reproduces_centre_and_zoom(page, server):
    await page.add_init_script("window.__noop = true;")
    response = await page.goto(server.url + server.image["url"] + "?stretch=asinh&cmap=viridis")
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    # zoom in and pan: the centre on FITS pixel (150.5, 420.25) at 3 screen pixels per image pixel
    await page.evaluate("""() => {
      const viewer = window.imagexViewer, item = viewer.world.getItemAt(0);
      viewer.viewport.zoomTo(item.imageToViewportZoom(3));
      const centre = new OpenSeadragon.Point(150.5 - 0.5, 600 - 420.25 + 0.5);
      viewer.viewport.panTo(item.imageToViewportCoordinates(centre));
    }""")
    await page.wait_for_function("() => new URL(location.href).searchParams.get('zoom') === '3'",
                                 timeout=10_000)
    params = parse_qs(urlsplit(page.url).query)
    assert params["stretch"] == ["asinh"] and params["cmap"] == ["viridis"]  # display.js's own, kept
    assert float(params["x"][0]) == pytest.approx(150.5, abs=0.02)
    assert float(params["y"][0]) == pytest.approx(420.25, abs=0.02)
    link = page.url

    second = await page.context.new_page()
    recorder = Recorder(second)
    await second.goto(link)
    await second.wait_for_function(FULLY_LOADED, timeout=30_000)
    await second.wait_for_function(SETTLED, timeout=30_000)
    view = await second.evaluate(VIEW)
    assert view["zoom"] == pytest.approx(3, rel=1e-3)
    assert view["x"] == pytest.approx(150.5, abs=0.05) and view["y"] == pytest.approx(420.25, abs=0.05)
    assert not recorder.errors, recorder.errors


@pytest.mark.parametrize("query", ["x=abc&y=12&zoom=-4", "x=1e999&y=NaN&zoom=0", "zoom=%3Cscript%3E"])
async def test_broken_view_parameters_fall_back_to_the_whole_image(page, server, query):
    recorder = Recorder(page)
    await page.goto(server.url + server.image["url"] + "?" + query)
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    await page.wait_for_function(SETTLED, timeout=30_000)
    view = await page.evaluate(VIEW)
    home = await page.evaluate("""() => {
      const viewer = window.imagexViewer;
      return viewer.world.getItemAt(0).viewportToImageZoom(viewer.viewport.getHomeZoom());
    }""")
    if "y=12" not in query:
        assert view["x"] == pytest.approx(SIZE / 2 + 0.5, abs=0.5)
    assert view["zoom"] == pytest.approx(home, rel=1e-3)
    assert not recorder.errors, recorder.errors


async def test_go_to_centres_the_view_on_the_position(page, server):
    await open_viewer(page, server)
    target = field_wcs().pixel_to_world(99.0, 449.0).icrs  # FITS pixel (100, 450)
    ra = target.ra.to_string(unit="hourangle", sep=":", precision=4)
    dec = target.dec.to_string(unit="deg", sep=":", precision=3, alwayssign=True)
    await page.fill("#goto-ra", ra)
    await page.fill("#goto-dec", dec)
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').textContent.startsWith('centred on')", timeout=10_000)
    await page.wait_for_function(SETTLED, timeout=30_000)
    view = await page.evaluate(VIEW)
    assert view["x"] == pytest.approx(100, abs=0.5) and view["y"] == pytest.approx(450, abs=0.5)
    assert "FITS x 100.0, y 450.0" in str(await page.text_content("#goto-message"))

    await page.fill("#goto-ra", "12:00:00")
    await page.fill("#goto-dec", "+45:00:00")
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').className === 'error'", timeout=10_000)
    message = str(await page.text_content("#goto-message"))
    assert "off this image" in message
    await page.fill("#goto-ra", quote("<b>x</b>"))
    await page.fill("#goto-dec", "<img src=x onerror=alert(1)>")
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').textContent.includes('is not a coordinate')",
        timeout=10_000)
    assert await page.locator("#goto-message img, #goto-message b").count() == 0


async def test_scale_bar_and_compass_follow_the_wcs(page, server):
    await open_viewer(page, server)
    for zoom in (0.5, 4.0):
        await page.evaluate("""(zoom) => {
          const viewer = window.imagexViewer;
          viewer.viewport.zoomTo(viewer.world.getItemAt(0).imageToViewportZoom(zoom), null, true);
        }""", zoom)
        await page.wait_for_timeout(200)
        label = str(await page.text_content("#scale-bar .scale-bar-label"))
        match = re.fullmatch(r"(?P<value>[\d.]+)(?P<unit>[\u2033\u2032\u00b0])", label)
        assert match, label
        arcsec = float(match["value"]) * {"\u2033": 1, "\u2032": 60, "\u00b0": 3600}[match["unit"]]
        width = await page.evaluate(
            "() => document.querySelector('#scale-bar .scale-bar-line').getBoundingClientRect().width")
        # the sample has 1 arcsec pixels: the bar is `arcsec` image pixels long on screen
        assert width == pytest.approx(arcsec * zoom, rel=0.02), (label, width)
        assert 20 <= width <= 152
    # north up and east to the left, as the sample's WCS has it (CD1_1 < 0)
    boxes = await page.evaluate("""() => {
      const box = (selector) => document.querySelector(selector).getBoundingClientRect();
      const centre = box("#compass"), north = box("#compass .compass-north polygon"),
            east = box("#compass .compass-east polygon");
      const mid = (b) => [b.left + b.width / 2, b.top + b.height / 2];
      return {centre: mid(centre), north: mid(north), east: mid(east)};
    }""")
    centre, north, east = (np.array(boxes[name]) for name in ("centre", "north", "east"))
    assert north[1] < centre[1] - 15 and abs(north[0] - centre[0]) < 3
    assert east[0] < centre[0] - 15 and abs(east[1] - centre[1]) < 3
