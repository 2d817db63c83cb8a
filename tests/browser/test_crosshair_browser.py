"""The readout's crosshair and pixel table in headless Chromium against a real `imagex serve`: a click
locks the readout on a pixel (the cursor may wander off), arrow keys move it, Escape unlocks; the pixel
table shows the 5x5 values around the pixel with its own value in the middle, the same value the readout
shows; and the loading indicator is gone once the view is complete."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.server_helpers import SIZE, Server
from tests.browser.viewer_helpers import FULLY_LOADED, open_viewer

pytestmark = pytest.mark.browser

ITEM_RECT = """() => {
  const viewer = window.imagexViewer;
  const r = viewer.viewport.viewportToViewerElementRectangle(viewer.world.getItemAt(0).getBounds(true));
  return [r.x, r.y, r.width, r.height];
}"""
READOUT = re.compile(r"^(locked at )?x (\d+), y (\d+)$")


async def screen_point(page: Any, fx: float, fy: float) -> tuple[float, float]:
    """The page position of the point a fraction fx, fy across the image as shown."""
    box = await page.locator("#viewer").bounding_box()
    x, y, width, height = await page.evaluate(ITEM_RECT)
    return box["x"] + x + width * fx, box["y"] + y + height * fy


async def readout(page: Any) -> tuple[bool, int, int]:
    text = (await page.locator("#readout").text_content() or "").strip()
    match = READOUT.match(text)
    assert match, text
    return bool(match[1]), int(match[2]), int(match[3])


async def settled_value(page: Any) -> str:
    await page.wait_for_function("() => /^value -?[0-9]/.test(document.getElementById('readout-value')"
                                 ".textContent)", timeout=30_000)
    return (await page.locator("#readout-value").text_content() or "").removeprefix("value ")


async def test_a_click_locks_the_readout_and_the_pixel_table_shows_the_values_around(page, server: Server):
    await open_viewer(page, server)
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    assert await page.locator("#loading").is_hidden()  # nothing left to load

    await page.locator("#pixel-table-toggle").check()
    x, y = await screen_point(page, 0.4, 0.6)
    await page.mouse.move(x, y)
    await page.mouse.click(x, y)
    locked, fits_x, fits_y = await readout(page)
    assert locked and 1 <= fits_x <= SIZE and 1 <= fits_y <= SIZE
    value = await settled_value(page)
    assert await page.locator("#crosshair").count() == 1

    # the table: 5 columns and rows named in FITS pixels, the locked pixel in the middle with its value
    table = page.locator("#pixel-table")
    await page.wait_for_function("() => document.querySelectorAll('#pixel-table td').length === 25",
                                 timeout=30_000)
    headers = await table.locator("tr").first.locator("th").all_text_contents()
    assert headers[1:] == [f"x {fits_x + d}" for d in range(-2, 3)]
    rows = await table.locator("tr th[scope=row]").all_text_contents()
    assert rows == [f"y {fits_y - d}" for d in range(-2, 3)]  # top row first: y falls downwards
    assert await table.locator("td.centre").text_content() == value

    # the cursor wanders off: the readout stays on the locked pixel
    elsewhere = await screen_point(page, 0.8, 0.2)
    await page.mouse.move(*elsewhere)
    await page.wait_for_timeout(300)
    assert await readout(page) == (True, fits_x, fits_y)

    # arrow keys move the locked pixel; up on the screen is up in FITS y
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowUp")
    assert await readout(page) == (True, fits_x + 1, fits_y + 1)
    first_column = "document.querySelector('#pixel-table tr th + th')"
    await page.wait_for_function(f"(want) => {first_column} && {first_column}.textContent === want",
                                 arg=f"x {fits_x - 1}", timeout=30_000)

    # Escape unlocks: the readout follows the cursor again
    await page.keyboard.press("Escape")
    assert await page.locator("#crosshair").count() == 0
    await page.mouse.move(elsewhere[0] + 3, elsewhere[1] + 3)
    await page.wait_for_function("() => !document.getElementById('readout').textContent.startsWith('locked')",
                                 timeout=30_000)
    locked, other_x, other_y = await readout(page)
    assert not locked and (other_x, other_y) != (fits_x + 1, fits_y + 1)
