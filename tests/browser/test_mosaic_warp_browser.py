"""In headless Chromium against a real `imagex serve`: a drizzled, north-up image on the pixel grid of a
raw HST-like frame (non-square pixels, skewed axes, SIP) is drawn resampled, and the drawn pixels put each
star where astropy puts it in the frame, zoomed in so one frame pixel is two screen pixels."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.browser.mosaic_helpers import ALL_LOADED, brightest, ingest_files
from tests.browser.server_helpers import imagex_serve
from tests.processes import free_port
from tests.routes.mosaic_helpers import drizzled_header, flt_header, star_positions, write

pytestmark = pytest.mark.browser


async def test_the_resampled_layer_draws_each_star_where_astropy_puts_it(page, tmp_path: Path) -> None:
    flt = write(tmp_path / "flt.fits", flt_header(240), 240)
    drizzled = write(tmp_path / "drz.fits", drizzled_header(260), 260)
    port = free_port()
    env = {**os.environ, "IMAGEX_DATA": str(tmp_path / "var"), "IMAGEX_WORKERS": "1",
           "IMAGEX_PORT": str(port), "IMAGEX_HOST": "127.0.0.1"}
    env.pop("IMAGEX_SAMPLES", None)
    ingest_files(env, [flt, drizzled], "public")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with imagex_serve(env, tmp_path / "serve.log") as url:
        with urllib.request.urlopen(url + "/api/images", timeout=10) as response:
            listed = json.loads(response.read())["images"]
        ids = {name: next(image["id"] for image in listed if image["name"].startswith(name))
               for name in ("flt", "drz")}
        answer = await page.goto(f"{url}/mosaic?ids={ids['flt']},{ids['drz']}&ref={ids['flt']}")
        assert answer is not None and answer.status == 200
        await page.wait_for_function(ALL_LOADED, timeout=60_000)
        warped = await page.evaluate("() => window.imagexMosaic.layers.map(layer => !!layer.data.warp)")
        assert warped == [False, True]
        # the drizzled layer alone, zoomed to two screen pixels per frame pixel on the field's centre
        await page.evaluate("""() => {
            const mosaic = window.imagexMosaic, viewer = mosaic.viewer;
            mosaic.layers[0].items.forEach(item => item.setOpacity(0));
            const centre = mosaic.pointOf(mosaic.frame.width / 2 - 0.5, mosaic.frame.height / 2 - 0.5);
            const zoom = 2 * mosaic.frame.width / viewer.viewport.getContainerSize().x;
            viewer.viewport.zoomTo(zoom, centre, true);
            viewer.viewport.panTo(centre, true);
            viewer.viewport.applyConstraints(true);
        }""")
        await page.wait_for_function(ALL_LOADED.replace(
            "layer.items.every(item => item.getFullyLoaded())",
            "layer.items.every(item => item.getOpacity() === 0 || item.getFullyLoaded())"), timeout=30_000)
        await page.wait_for_timeout(400)
        from astropy.wcs import WCS

        ra, dec = star_positions()
        fx, fy = WCS(flt_header(240)).all_world2pix(ra, dec, 0)
        checked = 0
        for x, y in zip(fx, fy, strict=True):
            expected = await page.evaluate("""([x, y]) => {
                const mosaic = window.imagexMosaic;
                const p = mosaic.viewer.viewport.pixelFromPoint(mosaic.pointOf(x, y), true);
                return [p.x, p.y]; }""", [float(x), float(y)])
            size = await page.evaluate("() => { const s = window.imagexViewer.viewport.getContainerSize(); "
                                       "return [s.x, s.y]; }")
            if not (20 < expected[0] < size[0] - 20 and 20 < expected[1] < size[1] - 20):
                continue  # off screen at this zoom
            seen = await brightest(page, (expected[0], expected[1]))
            # within one frame pixel (two screen pixels) of astropy
            assert np.hypot(seen[0] - expected[0], seen[1] - expected[1]) < 2.0, (seen, expected)
            checked += 1
        assert checked >= 3
    assert errors == []
