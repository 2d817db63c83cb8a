"""North up in headless Chromium against a real `imagex serve`: for a field turned by 30 degrees "North
up" turns the view so that moving the cursor up on the screen goes north and moving it left goes east, and
the compass shows north up and east left; for a mirrored one (east to the right, turned by 50 degrees)
north is up and east right (a turn cannot unmirror it), and the readout stays exact; unticking it brings
the view back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.server_helpers import Server, ingest_and_serve
from tests.browser.viewer_helpers import FULLY_LOADED

pytestmark = pytest.mark.browser

SIZE = 400
SKY = re.compile(r"\(([\d.]+)°, ([-+][\d.]+)°\)")
ANGLE = re.compile(r"rotate\((-?[\d.]+)\)")


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("north")
    turned = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE, rotation_deg=30.0)
    mirrored = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE, rotation_deg=50.0)
    mirrored.wcs.cd = mirrored.wcs.cd * np.array([[-1.0], [1.0]])  # east to the right: a mirrored sky
    for name, wcs in (("turned", turned), ("mirrored", mirrored)):
        header = wcs.to_header()
        header["OBJECT"] = name
        fits.PrimaryHDU(star_field(wcs, SIZE, SIZE), header).writeto(root / f"{name}.fits")
    with ingest_and_serve(root, root / "turned.fits", root / "mirrored.fits") as server:
        images = {image["name"]: image for image in server.get("/api/images")["images"]}
        yield server, images


async def sky_at(page: Any, x: float, y: float) -> tuple[float, float]:
    """RA and Dec (degrees) the readout shows with the cursor at page position (x, y)."""
    await page.mouse.move(x, y)
    await page.wait_for_function("() => /°\\)/.test(document.getElementById('readout-sky').textContent)",
                                 timeout=30_000)
    text = await page.locator("#readout-sky").text_content() or ""
    match = SKY.search(text)
    assert match, text
    return float(match[1]), float(match[2])


async def compass_angles(page: Any) -> tuple[float, float]:
    angles = []
    for part in ("north", "east"):
        transform = await page.locator(f"#compass .compass-{part}").get_attribute("transform") or ""
        match = ANGLE.search(transform)
        assert match, transform
        angles.append(float(match[1]))
    return angles[0], angles[1]


def near(angle: float, target: float, tolerance: float = 2.0) -> bool:
    return abs((angle - target + 180) % 360 - 180) < tolerance


@pytest.mark.parametrize("name", ["turned", "mirrored"])
async def test_north_up_turns_the_view_so_that_up_is_north_and_left_is_east(page, fields, name):
    server, images = fields
    response = await page.goto(server.url + images[name]["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    await page.wait_for_function("() => document.getElementById('viewer').dataset.described === 'true'",
                                 timeout=30_000)
    north, east = await compass_angles(page)
    assert not near(north, 0.0, 10.0), "the field is turned: north is not up before"

    await page.locator("#north-up").check()
    await page.wait_for_timeout(300)
    north, east = await compass_angles(page)
    east_side = 1.0 if name == "mirrored" else -1.0  # left for a true sky, right for a mirrored one
    assert near(north, 0.0) and near(east, 90.0 * east_side), (north, east)

    box = await page.locator("#viewer").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    ra, dec = await sky_at(page, cx, cy)
    up_ra, up_dec = await sky_at(page, cx, cy - 60)
    east_ra, east_dec = await sky_at(page, cx + 60 * east_side, cy)
    cos_dec = np.cos(np.deg2rad(dec))
    # up: Dec grows, RA stays; towards east: RA grows, Dec stays
    assert up_dec - dec > 0 and abs(up_ra - ra) * cos_dec < 0.05 * (up_dec - dec)
    assert (east_ra - ra) * cos_dec > 0 and abs(east_dec - dec) < 0.05 * (east_ra - ra) * cos_dec

    await page.locator("#north-up").uncheck()
    await page.wait_for_timeout(300)
    assert await page.evaluate("() => window.imagexViewer.viewport.getRotation()") == 0
    north, _ = await compass_angles(page)
    assert not near(north, 0.0, 10.0)
