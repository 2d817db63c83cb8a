"""What the browser tests share about the image viewer: a page's recorded responses, opening the viewer
and waiting for its tiles, the viewer as the user sees it, and the readout's sky text."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyvips

from tests.browser.server_helpers import SIZE, Server
from tests.cli_helpers import image_folder

TILE = re.compile(r"/tiles/(?P<id>[A-Za-z0-9]+)/(?P<token>[^/]+)/image_files/(?P<level>\d+)/\d+_\d+\.jpeg$")


# Counts OpenSeadragon's own tile events from the moment the page makes its viewer.
WATCH_VIEWER = """
window.__tiles = {loaded: 0, failed: []};
(function () {
  var viewer;
  Object.defineProperty(window, "imagexViewer", {
    configurable: true,
    get: function () { return viewer; },
    set: function (value) {
      viewer = value;
      value.addHandler("tile-loaded", function () { window.__tiles.loaded += 1; });
      value.addHandler("tile-load-failed", function (event) { window.__tiles.failed.push(event.message); });
    }
  });
})();
"""


FULLY_LOADED = """() => {
  const viewer = window.imagexViewer;
  return !!viewer && viewer.world.getItemCount() > 0 && viewer.world.getItemAt(0).getFullyLoaded();
}"""


class Recorder:
    """Every response, failed request and page error of one page."""

    def __init__(self, page: Any) -> None:
        self.responses: list[tuple[str, int]] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.on("response", lambda response: self.responses.append((response.url, response.status)))
        page.on("requestfailed", lambda request: self.failed.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def tiles(self) -> list[tuple[str, int]]:
        return [(url, status) for url, status in self.responses if "/tiles/" in url]

    def tile_levels(self) -> dict[int, list[int]]:
        levels: dict[int, list[int]] = {}
        for url, status in self.tiles():
            match = TILE.search(urlsplit(url).path)
            if match:
                levels.setdefault(int(match["level"]), []).append(status)
        return levels


async def open_viewer(page: Any, server: Server) -> Recorder:
    recorder = Recorder(page)
    await page.add_init_script(WATCH_VIEWER)
    response = await page.goto(server.url + server.image["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    return recorder


def deepest_level(server: Server) -> int:
    folder = image_folder(server.data, server.image["id"]) / "image_files"
    levels = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    assert max(levels) == math.ceil(math.log2(SIZE))
    return max(levels)


async def viewer_pixels(page: Any, viewer: str = "#viewer") -> np.ndarray:
    """The viewer element `viewer` as the user sees it (whatever drawer OpenSeadragon chose), grey levels."""
    png = await page.locator(viewer).screenshot()
    image = pyvips.Image.new_from_buffer(png, "").colourspace("b-w")[0]
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width))


def assert_tiles_ok(recorder: Recorder) -> None:
    tiles = recorder.tiles()
    assert tiles, "no tile requests at all"
    bad = [(url, status) for url, status in tiles if status != 200]
    assert not bad, f"tile responses other than 200: {bad}"
    assert not [url for url in recorder.failed if "/tiles/" in url], recorder.failed
    assert not recorder.errors, recorder.errors


async def move_to_image_pixel(page: Any, x: float, y: float) -> None:
    """Put the mouse over image pixel (x, y) (display orientation, 0-based from the top left)."""
    point = await page.evaluate("""([x, y]) => {
      const viewer = window.imagexViewer;
      const inside = viewer.world.getItemAt(0).imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
      const box = viewer.element.getBoundingClientRect();
      return [box.left + inside.x, box.top + inside.y];
    }""", [x, y])
    await page.mouse.move(point[0], point[1])


SKY_TEXT = re.compile(r"RA (?P<ra>\d\d:\d\d:\d\d\.\d{3}), Dec (?P<dec>[+-]\d\d:\d\d:\d\d\.\d\d) "
                      r"\((?P<ra_deg>\d+\.\d{6})°, (?P<dec_deg>[+-]\d+\.\d{6})°\)")


async def sky_text(page: Any, pattern: re.Pattern[str]) -> re.Match[str]:
    await page.wait_for_function("(source) => new RegExp(source).test("
                                 "document.getElementById('readout-sky').textContent)",
                                 arg=pattern.pattern.replace("(?P<", "(?<"), timeout=30_000)
    match = pattern.fullmatch(str(await page.text_content("#readout-sky")))
    assert match, await page.text_content("#readout-sky")
    return match
