"""A FITS cube in headless Chromium against a real `imagex serve`: the plane slider shows each plane with
its own tiles and its spectral coordinate, the pixel readout reads the plane shown, keys [ and ] step, the
plane is kept in the URL, and Play animates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from tests.browser.conftest import Server, ingest_and_serve, screenshot
from tests.browser.viewer_helpers import FULLY_LOADED, Recorder, viewer_pixels

pytestmark = pytest.mark.browser

SIZE = 240
PLANES = 4
# the one pyramid shown once a switch is complete (the old one removed)
ONLY = ("(part) => { const w = window.imagexViewer.world; return w.getItemCount() === 1 && "
        "w.getItemAt(0).source.tilesUrl.includes(part) && w.getItemAt(0).getFullyLoaded(); }")


async def play_until(page, label: str) -> Any:
    """Press Play, wait until the plane label starts with `label`, press Pause: the Play button."""
    play = page.locator("#plane-controls button[name=play]")
    await play.click()
    await page.wait_for_function("(label) => document.getElementById('plane-label').textContent"
                                 ".startsWith(label)", arg=label, timeout=10_000)
    await play.click()
    assert await play.text_content() == "Play"
    return play


async def shows(page, part: str) -> None:
    """Wait until the viewer shows only the pyramid whose URL holds `part`, fully loaded."""
    await page.wait_for_function(ONLY, arg=part, timeout=30_000)


def write_cube(root: Path) -> Path:
    """A 240x240x4 cube along FREQ: plane k is bright in the k-th vertical quarter and dark elsewhere."""
    header = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE).to_header()
    header.update({"CTYPE3": "FREQ", "CUNIT3": "Hz", "CRVAL3": 1.4204e9, "CDELT3": 2.5e5, "CRPIX3": 1.0,
                   "OBJECT": "Cube field"})
    cube = np.full((PLANES, SIZE, SIZE), 10.0, dtype=np.float32)
    quarter = SIZE // PLANES
    for k in range(PLANES):
        cube[k, :, k * quarter:(k + 1) * quarter] = 1000.0 + k
    cube += np.random.default_rng(1).normal(0, 1, cube.shape).astype(np.float32)
    path = root / "cube.fits"
    fits.PrimaryHDU(cube, header).writeto(path)
    return path


@pytest.fixture(scope="module")
def cube_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cube")
    with ingest_and_serve(root, write_cube(root), options=("--interval", "minmax")) as server:
        yield server


ITEM_RECT = """() => {
  const viewer = window.imagexViewer;
  const r = viewer.viewport.viewportToViewerElementRectangle(viewer.world.getItemAt(0).getBounds(true));
  return [r.x, r.y, r.width, r.height];
}"""


async def bright_quarter(page, viewer: str = "#viewer") -> int:
    """Which vertical quarter of the image, as the viewer (element `viewer`) shows it, is brightest."""
    pixels = await viewer_pixels(page, viewer)
    x, y, width, height = (round(v) for v in await page.evaluate(ITEM_RECT))
    shown = pixels[max(0, y):y + height, max(0, x):x + width].astype(float)
    quarters = np.array_split(shown, PLANES, axis=1)
    means = [quarter.mean() for quarter in quarters]
    assert max(means) > 2 * sorted(means)[-2], means  # one quarter clearly lit
    return int(np.argmax(means))


async def test_the_plane_slider_shows_each_plane_with_its_coordinate_and_values(page, cube_server: Server):
    assert cube_server.image["planes"]["count"] == PLANES
    recorder = Recorder(page)
    response = await page.goto(cube_server.url + cube_server.image["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    label = page.locator("#plane-label")
    assert await label.text_content() == "1 of 4: FREQ 1.4204 GHz"
    assert await bright_quarter(page) == 0

    slider = page.locator("#plane-controls input[name=plane]")
    await slider.fill("2")
    await shows(page, "/planes/2/display/")
    assert await label.text_content() == "3 of 4: FREQ 1.4209 GHz"
    assert await bright_quarter(page) == 2
    assert parse_qs(urlsplit(page.url).query)["plane"] == ["3"]
    await screenshot(page, "viewer-planes.png")

    # the readout reads the plane shown: over the third quarter, plane 3's bright value
    box = await page.locator("#viewer").bounding_box()
    assert box is not None
    item_box = await page.evaluate(ITEM_RECT)
    x = box["x"] + item_box[0] + item_box[2] * 0.625
    y = box["y"] + item_box[1] + item_box[3] * 0.5
    await page.mouse.move(x, y)
    value = page.locator("#readout-value")
    await page.wait_for_function("() => /value 100[0-9]\\.\\d*/.test(document.getElementById('readout-value')"
                                 ".textContent)", timeout=10_000)
    text = await value.text_content()
    assert text is not None and "plane 3 of 4" in text and 1000 < float(text.split()[1]) < 1006

    # keys step through the planes; a reload of the page's URL comes back to the same plane
    await page.locator("body").press("]")
    await shows(page, "/planes/3/display/")
    assert await label.text_content() == "4 of 4: FREQ 1.42115 GHz"
    await page.locator("body").press("[")
    await page.locator("body").press("[")
    await shows(page, "/planes/1/display/")
    response = await page.goto(page.url)
    assert response is not None and response.status == 200
    await shows(page, "/planes/1/display/")
    assert await label.text_content() == "2 of 4: FREQ 1.42065 GHz"

    # Play moves on by itself; Pause stops it
    await play_until(page, "3 of")
    failed = [(url, status) for url, status in recorder.tiles() if status >= 400]
    assert failed == []
