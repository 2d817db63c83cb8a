"""The single-image viewer in headless Chromium against a real `imagex serve`: the readout under the cursor
(FITS x/y, value, RA/Dec and Galactic as astropy gives them), the view kept in the URL and restored from
it, go to RA/Dec, the scale bar and the compass."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
import pytest
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, Sip

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.server_helpers import SIZE, Server, ingest_and_serve, screenshot
from tests.browser.viewer_helpers import (
    FULLY_LOADED,
    SKY_TEXT,
    Recorder,
    move_to_image_pixel,
    open_viewer,
    sky_text,
)

pytestmark = pytest.mark.browser

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


DESCRIBED = "() => document.getElementById('viewer').dataset.described === 'true'"


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


async def test_readout_shows_fits_pixel_and_sky_position_as_astropy_does(page, server):
    recorder = await open_viewer(page, server)
    wcs = field_wcs()
    for column, row in ((10, 20), (SIZE - 1, 0), (0, SIZE - 1), (317, 143)):
        await move_to_image_pixel(page, column + 0.5, row + 0.5)
        fits_x, fits_y = column + 1, SIZE - row
        await page.wait_for_function("(text) => document.getElementById('readout').textContent === text",
                                     arg=f"x {fits_x}, y {fits_y}", timeout=30_000)
        match = await sky_text(page, SKY_TEXT)
        expected = wcs.pixel_to_world(fits_x - 1, fits_y - 1).icrs
        decimal = SkyCoord(float(match["ra_deg"]), float(match["dec_deg"]), unit="deg")
        sexagesimal = SkyCoord(Angle(match["ra"], unit="hourangle"), Angle(match["dec"], unit="deg"))
        # the display rounds to 1e-6 degrees (0.0036") and 0.001 s / 0.01": well inside 0.1"
        assert decimal.separation(expected).arcsec < 0.1, (match.group(0), expected)
        assert sexagesimal.separation(expected).arcsec < 0.1, (match.group(0), expected)
    await screenshot(page, "viewer-readout.png")

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


async def test_readout_value_degrades_to_a_dash_when_the_pixel_answer_fails(page, server):
    # the network answers the value requests with an error (a server being restarted, a lost original)
    async def fail(route: Any) -> None:
        await route.fulfill(status=503, content_type="application/json", body='{"error": "restarting"}')

    await page.route("**/pixel/*", fail)
    await open_viewer(page, server)
    await move_to_image_pixel(page, 10.5, 19.5)
    await page.wait_for_function(
        "() => document.getElementById('readout-value').textContent === 'value \u2014'", timeout=30_000)
    await sky_text(page, SKY_TEXT)


async def test_readout_shows_the_pixel_value(page, server):
    assert pixel_route_status(server) == 200
    data = star_field(field_wcs(), SIZE, SIZE)
    await open_viewer(page, server)
    for column, row in ((10, 19), (250, 300)):
        await move_to_image_pixel(page, column + 0.5, row + 0.5)
        await page.wait_for_function(
            "(text) => document.getElementById('readout').textContent === text",
            arg=f"x {column + 1}, y {SIZE - row}", timeout=30_000)
        await page.wait_for_function(
            "() => /^value [-0-9.e+]+$/.test(document.getElementById('readout-value').textContent)",
            timeout=30_000)
        shown = float(str(await page.text_content("#readout-value")).removeprefix("value "))
        assert shown == pytest.approx(float(data[SIZE - 1 - row, column]), rel=1e-6)


async def test_view_in_the_url_reproduces_centre_and_zoom(page, server):
    response = await page.goto(server.url + server.image["url"] + "?stretch=asinh&cmap=viridis")
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    await page.wait_for_function(SETTLED, timeout=30_000)
    # the whole image needs no view parameters: a plain link stays plain
    assert not {"x", "y", "zoom"} & set(parse_qs(urlsplit(page.url).query))
    # zoom in and pan: the centre on FITS pixel (150.5, 420.25) at 3 screen pixels per image pixel
    await page.evaluate("""() => {
      const viewer = window.imagexViewer, item = viewer.world.getItemAt(0);
      viewer.viewport.zoomTo(item.imageToViewportZoom(3));
      const centre = new OpenSeadragon.Point(150.5 - 0.5, 600 - 420.25 + 0.5);
      viewer.viewport.panTo(item.imageToViewportCoordinates(centre));
    }""")
    await page.wait_for_function("() => new URL(location.href).searchParams.get('zoom') === '3'",
                                 timeout=30_000)
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
        "() => document.getElementById('goto-message').textContent.startsWith('centred on')", timeout=30_000)
    await page.wait_for_function(SETTLED, timeout=30_000)
    view = await page.evaluate(VIEW)
    assert view["x"] == pytest.approx(100, abs=0.5) and view["y"] == pytest.approx(450, abs=0.5)
    assert "FITS x 100.0, y 450.0" in str(await page.text_content("#goto-message"))
    # a ring marks the place, at the centre of the view
    marker = await page.locator("#goto-marker").bounding_box()
    frame = await page.locator("#viewer").bounding_box()
    assert marker is not None and frame is not None
    assert marker["x"] + marker["width"] / 2 == pytest.approx(frame["x"] + frame["width"] / 2, abs=2)
    assert marker["y"] + marker["height"] / 2 == pytest.approx(frame["y"] + frame["height"] / 2, abs=2)

    await page.fill("#goto-ra", "12:00:00")
    await page.fill("#goto-dec", "+45:00:00")
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').className === 'error'", timeout=30_000)
    message = str(await page.text_content("#goto-message"))
    assert "off this image" in message
    await page.fill("#goto-ra", quote("<b>x</b>"))
    await page.fill("#goto-dec", "<img src=x onerror=alert(1)>")
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').textContent.includes('is not a coordinate')",
        timeout=30_000)
    assert await page.locator("#goto-message img, #goto-message b").count() == 0

    # an object named in the archive (the field's own OBJECT, spelt otherwise): its image's centre
    await page.fill("#goto-name", "BROWSER-field")
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').textContent.startsWith('BROWSER-field, the centre')",
        timeout=30_000)
    await page.wait_for_function(SETTLED, timeout=30_000)
    view = await page.evaluate(VIEW)
    assert view["x"] == pytest.approx(300.5, abs=0.5) and view["y"] == pytest.approx(300.5, abs=0.5)
    assert await page.locator(".goto-marker").count() == 1  # one ring: the last place
    await page.fill("#goto-name", "Andromeda")
    await page.click("#goto button[type=submit]")
    await page.wait_for_function(
        "() => document.getElementById('goto-message').className === 'error'", timeout=30_000)
    assert "no image you may see is of an object named 'Andromeda'" in str(
        await page.text_content("#goto-message"))


async def test_scale_bar_and_compass_follow_the_wcs(page, server):
    await open_viewer(page, server)
    await page.wait_for_function(DESCRIBED, timeout=30_000)
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


# A second archive: a rotated TAN-SIP field straddling RA 0 and a microscopy image with 0.25 um pixels.
OTHER_SIZE = 800


def sip_field_wcs() -> Any:
    wcs = celestial_wcs(0.05, -30.0, OTHER_SIZE, OTHER_SIZE, scale_arcsec=1.2, rotation_deg=35)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[2, 0], a[0, 2], a[1, 1], a[3, 0] = 1e-5, -8e-6, 1.2e-5, 4e-9
    b[0, 2], b[2, 0], b[1, 1], b[0, 3] = 9e-6, -5e-6, -7e-6, -5e-9
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def all_sky_wcs() -> Any:
    """A Mollweide map of the whole sky in Galactic coordinates, 1 degree a pixel (360 x 180)."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval = ["GLON-MOL", "GLAT-MOL"], [0.0, 0.0]
    wcs.wcs.crpix, wcs.wcs.cdelt = [180.5, 90.5], [-1.0, 1.0]
    return wcs


@pytest.fixture(scope="module")
def others(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """(url, {"sip": image, "micro": image}) of a real `imagex serve` on its own data folder."""
    root = tmp_path_factory.mktemp("others")
    wcs = sip_field_wcs()
    header = wcs.to_header(relax=True)
    header["OBJECT"] = "SIP field"
    # the sample star catalogue lies far from this field: noise is all the readout needs
    sky = np.random.default_rng(4).normal(100, 10, (OTHER_SIZE, OTHER_SIZE)).astype(np.float32)
    fits.PrimaryHDU(sky, header).writeto(root / "sip.fits")
    micro = fits.Header()
    micro["OBJECT"] = "Cells"
    micro["CTYPE1"], micro["CTYPE2"] = "LINEAR", "LINEAR"
    micro["CDELT1"], micro["CDELT2"] = 0.25, 0.25
    micro["CUNIT1"], micro["CUNIT2"] = "um", "um"
    pixels = np.random.default_rng(5).normal(1000, 50, (400, 500)).astype(np.float32)
    fits.PrimaryHDU(pixels, micro).writeto(root / "cells.fits")
    whole = all_sky_wcs().to_header()
    whole["OBJECT"] = "All sky"
    fits.PrimaryHDU(np.random.default_rng(6).normal(5, 1, (180, 360)).astype(np.float32), whole).writeto(
        root / "allsky.fits")
    with ingest_and_serve(root, root / "sip.fits", root / "cells.fits", root / "allsky.fits") as server:
        listing = server.get("/api/images")["images"]
        names = {"SIP field": "sip", "Cells": "micro", "All sky": "allsky"}
        images = {names[item["name"]]: item for item in listing}
        assert set(images) == {"sip", "micro", "allsky"}
        yield server.url, images


async def open_image(page: Any, url: str, image: dict[str, Any]) -> Recorder:
    recorder = Recorder(page)
    response = await page.goto(url + image["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    await page.wait_for_function(DESCRIBED, timeout=30_000)
    return recorder


async def test_rotated_sip_field_across_ra_zero_reads_and_points_as_astropy_says(page, others):
    url, images = others
    recorder = await open_image(page, url, images["sip"])
    wcs = sip_field_wcs()
    corners = wcs.pixel_to_world(np.array([0, OTHER_SIZE - 1]), np.array([0, 0])).icrs.ra.deg
    assert corners.min() < 1 and corners.max() > 359  # the image really straddles RA 0
    for column, row in ((3, 5), (OTHER_SIZE - 4, 7), (400, 400), (790, 780), (12, 777)):
        await move_to_image_pixel(page, column + 0.5, row + 0.5)
        fits_x, fits_y = column + 1, OTHER_SIZE - row
        await page.wait_for_function("(text) => document.getElementById('readout').textContent === text",
                                     arg=f"x {fits_x}, y {fits_y}", timeout=30_000)
        match = await sky_text(page, SKY_TEXT)
        expected = wcs.pixel_to_world(fits_x - 1, fits_y - 1).icrs
        shown = SkyCoord(Angle(match["ra"], unit="hourangle"), Angle(match["dec"], unit="deg"))
        assert shown.separation(expected).arcsec < 0.1, (match.group(0), expected)
    # the compass: its arrows point where astropy puts a step north and east of the view centre
    view = await page.evaluate(VIEW)
    centre = wcs.pixel_to_world(view["x"] - 1, view["y"] - 1)
    compass = await page.evaluate("""() => {
      const mid = (selector) => {
        const b = document.querySelector(selector).getBoundingClientRect();
        return [b.left + b.width / 2, b.top + b.height / 2];
      };
      return {centre: mid("#compass"), north: mid("#compass .compass-north polygon"),
              east: mid("#compass .compass-east polygon")};
    }""")
    for name, angle in (("north", 0.0), ("east", np.pi / 2)):
        x, y = wcs.world_to_pixel(centre.directional_offset_by(angle, 2 / 3600))
        expected = np.array([x - (view["x"] - 1), -(y - (view["y"] - 1))])  # screen y points down
        shown = np.array(compass[name]) - np.array(compass["centre"])
        cosine = shown @ expected / np.linalg.norm(shown) / np.linalg.norm(expected)
        assert np.degrees(np.arccos(min(1.0, cosine))) < 4, (name, shown, expected)
    assert not recorder.errors, recorder.errors


async def test_microscopy_image_has_a_physical_scale_bar_and_no_sky(page, others):
    url, images = others
    recorder = await open_image(page, url, images["micro"])
    assert await page.locator("#goto").count() == 0
    assert not await page.locator("#compass").is_visible()
    await page.evaluate("""() => {
      const viewer = window.imagexViewer;
      viewer.viewport.zoomTo(viewer.world.getItemAt(0).imageToViewportZoom(2), null, true);
    }""")
    await page.wait_for_timeout(200)
    label = str(await page.text_content("#scale-bar .scale-bar-label"))
    match = re.fullmatch(r"(?P<value>[\d.]+) (?P<unit>nm|\u00b5m|mm|m)", label)
    assert match, label
    metres = float(match["value"]) * {"nm": 1e-9, "\u00b5m": 1e-6, "mm": 1e-3, "m": 1.0}[match["unit"]]
    width = await page.evaluate(
        "() => document.querySelector('#scale-bar .scale-bar-line').getBoundingClientRect().width")
    # 0.25 um pixels shown 2 screen pixels each
    assert width == pytest.approx(metres / 0.25e-6 * 2, rel=0.02), (label, width)
    await move_to_image_pixel(page, 250.5, 210.5)
    await page.wait_for_function("() => document.getElementById('readout').textContent === 'x 251, y 190'")
    assert await page.text_content("#readout-sky") == ""
    assert not recorder.errors, recorder.errors


async def test_all_sky_map_reads_out_exact_positions_up_to_its_rim(page, others):
    # No grid follows an all-sky projection to its rim: there the page asks the server for astropy's
    # position of the pixel. Every pixel with sky reads within 0.1" of astropy, in ICRS and Galactic;
    # a pixel outside the ellipse has no sky position.
    url, images = others
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/position?" in request.url else None)
    recorder = await open_image(page, url, images["allsky"])
    wcs = all_sky_wcs()
    xs = np.arange(360.0)
    first = int(xs[np.isfinite(wcs.pixel_to_world(xs, np.full(360, 89.0)).l.deg)][0])
    # (0-based astropy x, y): the rim of the middle row, near the top, inside, the far rim
    for ax, ay in ((first, 89), (179, 170), (100, 60), (360 - first - 1, 89)):
        expected = wcs.pixel_to_world(ax, ay)
        assert np.isfinite(expected.l.deg)
        await move_to_image_pixel(page, ax + 0.5, 180 - ay - 0.5)
        await page.wait_for_function("(text) => document.getElementById('readout').textContent === text",
                                     arg=f"x {ax + 1}, y {ay + 1}", timeout=30_000)
        match = await sky_text(page, SKY_TEXT)
        shown = SkyCoord(float(match["ra_deg"]), float(match["dec_deg"]), unit="deg")
        assert shown.separation(expected.icrs).arcsec < 0.1, (ax, ay, match.group(0))
        await page.check("#readout-galactic")
        match = await sky_text(page, GALACTIC_TEXT)
        shown = SkyCoord(float(match["l"]), float(match["b"]), unit="deg", frame="galactic")
        assert shown.separation(expected).arcsec < 0.1, (ax, ay, match.group(0))
        await page.uncheck("#readout-galactic")
    assert any(f"x={first + 1}&y=90" in address for address in asked), asked
    await move_to_image_pixel(page, 2.5, 2.5)  # a corner: off the ellipse
    await page.wait_for_function(
        "() => document.getElementById('readout-sky').textContent === 'no sky position'", timeout=30_000)
    assert not recorder.errors, recorder.errors
