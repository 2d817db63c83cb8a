"""What the browser tests share about a FITS cube: the cube itself (plane k bright in the k-th vertical
quarter), where the viewer draws it, which quarter it shows lit, and waiting for a plane's pyramid or for Play
to reach a plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from tests.browser.viewer_helpers import viewer_pixels

SIZE = 240
PLANES = 4
# the one pyramid shown once a switch is complete (the old one removed)
ONLY = ("(part) => { const v = window.imagexViewer, w = v && v.world; "
        "return !!w && w.getItemCount() === 1 && "
        "w.getItemAt(0).source.tilesUrl.includes(part) && w.getItemAt(0).getFullyLoaded(); }")


async def play_until(page, label: str) -> Any:
    """Press Play, wait until the plane label starts with `label`, press Pause: the Play button."""
    play = page.locator("#plane-controls button[name=play]")
    await play.click()
    await page.wait_for_function("(label) => document.getElementById('plane-label').textContent"
                                 ".startsWith(label)", arg=label, timeout=30_000)
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
