"""The display controls in headless Chromium against a real `imagex serve`: changing the stretch or the
colormap switches the viewer to dynamic tiles whose pixels differ from the static pyramid's, keeps the
view where it was, writes the choice into the page URL, and reloading that URL restores it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.browser.display_helpers import LOW_FILLED, controls, display_specs, query, shows
from tests.browser.server_helpers import Server, screenshot
from tests.browser.viewer_helpers import Recorder, assert_tiles_ok, open_viewer, viewer_pixels

pytestmark = pytest.mark.browser

VIEW = """() => {
  const viewport = window.imagexViewer.viewport;
  const centre = viewport.getCenter(true);
  return [centre.x, centre.y, viewport.getZoom(true)];
}"""


async def test_changing_the_stretch_loads_other_tiles_and_the_url_restores_it(page, server: Server):
    recorder = await open_viewer(page, server)
    form = page.locator("#display-controls")
    assert await controls(page) == {"interval": "zscale", "stretch": "linear", "cmap": "grey",
                                    "inverted": False, "low": "", "high": "", "percent": "99.5",
                                    "message": ""}
    assert display_specs(recorder) == {}
    before = await viewer_pixels(page)
    view = await page.evaluate(VIEW)

    await form.locator("select[name=stretch]").select_option("sqrt")
    await shows(page, "zscale~sqrt~grey")
    assert display_specs(recorder)["zscale~sqrt~grey"], "no dynamic tiles were requested"
    assert_tiles_ok(recorder)
    assert await page.evaluate(VIEW) == pytest.approx(view)  # the view did not move
    sqrt = await viewer_pixels(page)
    assert sqrt.shape == before.shape
    assert np.abs(sqrt.astype(int) - before.astype(int)).mean() > 10  # sqrt lifts the sky
    assert sqrt.mean() > before.mean() + 10
    assert query(page) == {"interval": ["zscale"], "stretch": ["sqrt"], "cmap": ["grey"]}

    await form.locator("select[name=cmap]").select_option("viridis")
    await form.locator("input[name=inverted]").check()
    await shows(page, "zscale~sqrt~viridis_r")
    coloured = await page.locator("#viewer").screenshot()
    await screenshot(page, "viewer-display.png")
    assert query(page)["cmap"] == ["viridis_r"]

    # a shared link: the same page URL in a fresh load restores the controls and the display
    shared = page.url
    reloaded = Recorder(page)
    response = await page.goto(shared)
    assert response is not None and response.status == 200
    await shows(page, "zscale~sqrt~viridis_r")
    assert (await controls(page))["stretch"] == "sqrt"
    assert (await controls(page))["cmap"] == "viridis" and (await controls(page))["inverted"] is True
    assert display_specs(reloaded)["zscale~sqrt~viridis_r"]
    assert_tiles_ok(reloaded)
    again = await page.locator("#viewer").screenshot()
    assert again == coloured or _close(again, coloured)

    # reset: back to the static pyramid, and the URL loses the display parameters
    await form.locator("button[name=reset]").click()
    await shows(page, None)
    assert query(page) == {}
    assert (await controls(page))["stretch"] == "linear"


async def test_manual_limits_are_checked_before_use(page, server: Server):
    recorder = await open_viewer(page, server)
    form = page.locator("#display-controls")
    await form.locator("select[name=interval]").select_option("manual")
    assert await form.locator("input[name=low]").is_visible()
    assert not await form.locator("input[name=percent]").is_visible()
    # "manual" starts from the cuts in use (test_histogram_browser.py): that display, which looks the same
    await page.wait_for_function(LOW_FILLED)
    started = "m{low}:{high}~linear~grey".format(**await controls(page))
    await shows(page, started)
    await form.locator("input[name=low]").fill("300")
    await form.locator("input[name=high]").fill("50")
    await form.locator("input[name=high]").press("Enter")
    await page.wait_for_function(
        "() => document.getElementById('display-controls').elements.message.textContent !== ''")
    assert (await controls(page))["message"] == "low must be less than high"
    assert set(display_specs(recorder)) == {started}  # the wrong limits were not used
    await form.locator("input[name=high]").fill("1e3")
    await form.locator("input[name=high]").press("Enter")
    await shows(page, "m300:1000~linear~grey")
    assert (await controls(page))["message"] == ""
    assert query(page) == {"interval": ["manual"], "low": ["300"], "high": ["1000"], "stretch": ["linear"],
                           "cmap": ["grey"]}
    # nearly all of the sky (about 100) is below 300: black
    pixels = await viewer_pixels(page)
    height, width = pixels.shape
    assert np.median(pixels[height // 4: 3 * height // 4, width // 3: 2 * width // 3]) < 5


def _close(one: bytes, two: bytes) -> bool:
    import pyvips

    first = pyvips.Image.new_from_buffer(one, "")
    second = pyvips.Image.new_from_buffer(two, "")
    return bool((first.width, first.height) == (second.width, second.height)
                and (first - second).abs().avg() < 2)
