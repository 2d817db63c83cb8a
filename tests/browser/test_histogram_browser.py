"""The histogram with cuts of the display controls, in headless Chromium against a real `imagex serve`: it
shows the pixel histogram with the cuts in use (lines and numbers), choosing "manual" fills in those cuts,
and dragging the high line (or moving the low one with the arrow keys) switches the viewer to the manual
display `m<low>:<high>~...` with the new cuts."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from tests.browser.display_helpers import LOW_FILLED, controls, display_specs, query, shows
from tests.browser.server_helpers import Server
from tests.browser.viewer_helpers import assert_tiles_ok, open_viewer, viewer_pixels

pytestmark = pytest.mark.browser

HISTOGRAM = """() => {
  const box = document.getElementById('histogram');
  const cut = (which) => box.querySelector('.cut-' + which);
  return {hidden: box.hidden, bars: box.querySelector('path.bars').getAttribute('d'),
          low: cut('low').getAttribute('aria-valuenow'), high: cut('high').getAttribute('aria-valuenow'),
          shownLow: box.querySelector('output[name=cut_low]').value,
          shownHigh: box.querySelector('output[name=cut_high]').value,
          spec: document.getElementById('display-controls').dataset.spec};
}"""
MANUAL = re.compile(r"^m(?P<low>[^:~]+):(?P<high>[^~]+)~linear~grey$")


async def histogram_shown(page: Any) -> dict[str, Any]:
    """The histogram's state once it has loaded and drawn its cuts."""
    await page.wait_for_function(
        "() => { const box = document.getElementById('histogram');"
        " return box && !box.hidden && box.querySelector('.cut-high').getAttribute('aria-valuenow'); }",
        timeout=30_000)
    return dict(await page.evaluate(HISTOGRAM))


def api_histogram(server: Server, display: str = "") -> dict[str, Any]:
    return dict(server.get(f"/api/images/{server.image['id']}/histogram"
                           + (f"?display={display}" if display else "")))


async def test_the_histogram_shows_the_cuts_and_manual_starts_from_them(page, server: Server):
    recorder = await open_viewer(page, server)
    expected = api_histogram(server)
    shown = await histogram_shown(page)
    assert shown["spec"] == expected["default"] == "zscale~linear~grey"
    assert shown["bars"].startswith("M0 ") and shown["bars"].count("H") == len(expected["counts"])
    # the static pyramid's own cuts, drawn and written out
    assert (float(shown["low"]), float(shown["high"])) == (expected["low"], expected["high"])
    assert float(shown["shownLow"]) == pytest.approx(expected["low"], rel=1e-5)
    assert float(shown["shownHigh"]) == pytest.approx(expected["high"], rel=1e-5)
    assert await page.locator("#histogram svg").is_visible()

    # another interval: the cuts its tiles are rendered with
    form = page.locator("#display-controls")
    await form.locator("select[name=interval]").select_option("minmax")
    await shows(page, "minmax~linear~grey")
    minmax = api_histogram(server, "minmax~linear~grey")
    await page.wait_for_function("(high) => document.querySelector('#histogram .cut-high')"
                                 ".getAttribute('aria-valuenow') === String(high)", arg=minmax["high"])
    assert minmax["high"] > expected["high"]  # the brightest star, far above zscale's

    # "manual" fills in the cuts in use (minmax's), no empty fields and no error, and shows them
    await form.locator("select[name=interval]").select_option("manual")
    await page.wait_for_function(LOW_FILLED)
    fields = await controls(page)
    assert fields["message"] == ""
    assert (float(fields["low"]), float(fields["high"])) == (minmax["low"], minmax["high"])
    spec = f"m{fields['low']}:{fields['high']}~linear~grey"
    await shows(page, spec)
    assert query(page) == {"interval": ["manual"], "low": [fields["low"]], "high": [fields["high"]],
                           "stretch": ["linear"], "cmap": ["grey"]}
    assert display_specs(recorder)[spec]
    assert_tiles_ok(recorder)


async def test_dragging_the_high_cut_shows_the_manual_display(page, server: Server):
    recorder = await open_viewer(page, server)
    expected = api_histogram(server)
    await histogram_shown(page)
    before = await viewer_pixels(page)
    await page.locator("#histogram").scroll_into_view_if_needed()  # below the viewer
    plot = await page.locator("#histogram svg").bounding_box()
    line = await page.locator("#histogram .cut-high").bounding_box()
    assert plot is not None and line is not None
    x, y = line["x"] + line["width"] / 2, plot["y"] + plot["height"] / 2
    target = min(plot["x"] + plot["width"] - 2, x + plot["width"] / 4)  # to the right: a higher cut
    await page.mouse.move(x, y)
    await page.mouse.down()
    for step in range(1, 6):
        await page.mouse.move(x + (target - x) * step / 5, y)
    await page.mouse.up()

    await page.wait_for_function("() => /^m/.test(document.getElementById('display-controls').dataset.spec)",
                                 timeout=30_000)
    shown = await histogram_shown(page)
    match = MANUAL.fullmatch(shown["spec"])
    assert match, shown["spec"]
    low, high = float(match["low"]), float(match["high"])
    assert low == expected["low"]  # the other cut stays where it was, exactly
    assert high > expected["high"]
    assert (float(shown["low"]), float(shown["high"])) == (low, high)
    await shows(page, shown["spec"])
    assert display_specs(recorder)[shown["spec"]], "no m<low>:<high> tiles were requested"
    assert_tiles_ok(recorder)
    fields = await controls(page)
    assert (fields["interval"], fields["low"], fields["high"]) == ("manual", match["low"], match["high"])
    assert query(page)["interval"] == ["manual"] and query(page)["high"] == [match["high"]]
    # a higher white point: the picture is darker
    assert (await viewer_pixels(page)).mean() < before.mean() - 2

    # the low cut, focused, moves with the arrow keys (a bin a press) and is applied once they rest
    await page.locator("#histogram .cut-low").focus()
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    await page.wait_for_function(
        "(spec) => { const now = document.getElementById('display-controls').dataset.spec;"
        " return now !== spec && /^m/.test(now); }", arg=shown["spec"], timeout=30_000)
    moved = MANUAL.fullmatch(await page.evaluate("document.getElementById('display-controls').dataset.spec"))
    assert moved and float(moved["high"]) == high
    bin_width = (expected["hi"] - expected["lo"]) / len(expected["counts"])
    assert float(moved["low"]) == pytest.approx(low + 2 * bin_width, abs=bin_width / 2)
    await shows(page, moved.group(0))
    assert np.isfinite(float(moved["low"]))
