"""A FITS cube in headless Chromium against a real `imagex serve`: the plane slider shows each plane with
its own tiles and its spectral coordinate, the pixel readout reads the plane shown, keys [ and ] step, the
plane is kept in the URL, and Play animates."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.planes_helpers import ITEM_RECT, PLANES, bright_quarter, play_until, shows, write_cube
from tests.browser.server_helpers import Server, ingest_and_serve, screenshot
from tests.browser.viewer_helpers import FULLY_LOADED, Recorder

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def cube_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cube")
    with ingest_and_serve(root, write_cube(root), options=("--interval", "minmax")) as server:
        yield server


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
                                 ".textContent)", timeout=30_000)
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
