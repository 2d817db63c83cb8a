"""What the browser tests share about the display controls: their fields as the page has them, the dynamic
tiles a page asked for by display, the page URL's query, and waiting for the viewer to show a display."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.browser.viewer_helpers import FULLY_LOADED

DISPLAY_TILE = re.compile(r"/display/(?P<spec>[^/]+)/image_files/\d+/\d+_\d+\.jpeg$")
# the shown pyramid's address; null while the page has no viewer or the viewer no image yet (just after a
# navigation: a predicate that throws ends the wait at once instead of waiting)
SHOWN = ("() => { const v = window.imagexViewer, item = v && v.world.getItemAt(0); "
         "return item ? item.source.tilesUrl : null; }")
LOW_FILLED = "() => document.getElementById('display-controls').elements.low.value !== ''"


async def shows(page: Any, spec: str | None) -> None:
    """Wait until the viewer shows `spec`'s dynamic pyramid (None: the static one), fully loaded."""
    if spec is None:
        await page.wait_for_function(f"() => {{ const url = ({SHOWN})(); "
                                     "return url !== null && !url.includes('/display/'); }", timeout=30_000)
    else:
        await page.wait_for_function(f"(spec) => {{ const url = ({SHOWN})(); "
                                     "return url !== null && url.includes('/display/' + spec + '/'); }",
                                     arg=spec, timeout=30_000)
    await page.wait_for_timeout(100)
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)


def display_specs(recorder: Any) -> dict[str, list[int]]:
    specs: dict[str, list[int]] = {}
    for url, status in recorder.tiles():
        match = DISPLAY_TILE.search(urlsplit(url).path)
        if match:
            specs.setdefault(match["spec"], []).append(status)
    return specs


def query(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def controls(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate("""() => {
      const f = document.getElementById('display-controls').elements;
      return {interval: f.interval.value, stretch: f.stretch.value, cmap: f.cmap.value,
              inverted: f.inverted.checked, low: f.low.value, high: f.high.value, percent: f.percent.value,
              message: f.message.textContent};
    }"""))
