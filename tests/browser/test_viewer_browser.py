"""The image page in headless Chromium against a real `imagex serve`: OpenSeadragon loads the pyramid
from signed tile URLs, draws a non-blank image, reaches full resolution, and shows the pixel under the
cursor. Plus the tile route's guards as seen through Hypercorn."""

from __future__ import annotations

import http.client
import re
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.browser.server_helpers import SIZE, Server
from tests.browser.viewer_helpers import (
    FULLY_LOADED,
    assert_tiles_ok,
    deepest_level,
    move_to_image_pixel,
    open_viewer,
    viewer_pixels,
)

pytestmark = pytest.mark.browser


async def test_viewer_loads_tiles_and_draws_the_image(page, server):
    recorder = await open_viewer(page, server)
    assert_tiles_ok(recorder)
    assert any(urlsplit(url).path.endswith("/image.dzi") for url, _ in recorder.tiles())
    levels = recorder.tile_levels()
    assert levels, "no image_files tiles were requested"
    events = await page.evaluate("window.__tiles")
    assert events["loaded"] >= 1 and events["failed"] == []
    assert events["loaded"] <= sum(len(statuses) for statuses in levels.values())

    pixels = await viewer_pixels(page)
    height, width = pixels.shape
    middle = pixels[height // 4: 3 * height // 4, width // 2 - height // 4: width // 2 + height // 4]
    # a star field: a sky background that is not black, and stars much brighter than it
    assert middle.std() > 5, f"viewer looks blank (std {middle.std():.2f})"
    assert (middle > 10).mean() > 0.5, "most of the image is black"
    assert (middle > np.median(middle) + 60).sum() >= 20, "no stars visible"
    assert len(np.unique(middle)) > 30


async def test_zooming_in_fetches_the_full_resolution_level(page, server):
    # a small window: the whole image fits at well under full resolution, so the deepest level is only
    # needed once the user zooms in
    await page.set_viewport_size({"width": 480, "height": 400})
    recorder = await open_viewer(page, server)
    deepest = deepest_level(server)
    assert deepest not in recorder.tile_levels(), recorder.tile_levels()
    async with page.expect_response(lambda r: f"/image_files/{deepest}/" in r.url, timeout=30_000):
        await page.evaluate("""() => {
          const viewport = window.imagexViewer.viewport;
          viewport.zoomTo(viewport.imageToViewportZoom(2), null, true);
        }""")
    await page.wait_for_timeout(100)
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    levels = recorder.tile_levels()
    assert deepest in levels and max(levels) == deepest
    assert all(status == 200 for status in levels[deepest])
    assert_tiles_ok(recorder)
    zoom = await page.evaluate(
        "() => imagexViewer.viewport.viewportToImageZoom(imagexViewer.viewport.getZoom(true))")
    assert zoom == pytest.approx(2, rel=0.01)
    pixels = await viewer_pixels(page)
    assert pixels.std() > 5


async def readout(page: Any, expected: str) -> str:
    await page.wait_for_function("(text) => document.getElementById('readout').textContent === text",
                                 arg=expected, timeout=30_000)
    return str(await page.text_content("#readout"))


async def test_mouse_over_the_viewer_shows_fits_pixel_coordinates(page, server):
    await open_viewer(page, server)
    assert (await page.text_content("#readout") or "").strip() == ""
    box = await page.locator("#viewer").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.wait_for_function(
        "() => /^x \\d+, y \\d+$/.test(document.getElementById('readout').textContent)", timeout=30_000)
    text = await page.text_content("#readout")
    match = re.fullmatch(r"x (\d+), y (\d+)", text or "")
    assert match, text
    x, y = int(match[1]), int(match[2])
    assert abs(x - SIZE / 2) <= 3 and abs(y - SIZE / 2) <= 3, text

    # FITS counts from 1 at the bottom left; the display's top row is the FITS row SIZE
    await move_to_image_pixel(page, 10.5, 20.5)
    assert await readout(page, f"x 11, y {SIZE - 20}")
    await move_to_image_pixel(page, SIZE - 0.5, SIZE - 0.5)
    assert await readout(page, f"x {SIZE}, y 1")
    # off the image (the viewer is wider than the fitted image): the readout clears
    await move_to_image_pixel(page, -40, SIZE / 2)
    assert await readout(page, "\u00a0")


def raw_get(server: Server, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """GET with the path sent exactly as written (no client-side normalisation)."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def test_real_server_serves_tiles_with_caching_and_guards(server):
    dzi = server.image["dzi_url"]
    base = dzi.rsplit("/", 1)[0]
    status, body, headers = raw_get(server, dzi)
    assert status == 200 and headers["Content-Type"].startswith("application/xml") and b"<Image" in body
    status, body, _ = raw_get(server, dzi, {"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    status, body, headers = raw_get(server, f"{base}/image_files/0/0_0.jpeg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body.startswith(b"\xff\xd8")

    secret = (server.data / "secret.key").read_bytes().strip()
    for name in ("../../../secret.key", "%2e%2e/%2e%2e/%2e%2e/secret.key", "..%2f..%2f..%2fsecret.key",
                 "image_files/../../../../secret.key", "secret.key", "thumb.jpeg%00"):
        status, body, _ = raw_get(server, f"{base}/{name}")
        assert status == 404, name
        assert secret not in body
    image_id = server.image["id"]
    token = base.rsplit("/", 1)[1]
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    status, _, _ = raw_get(server, f"/tiles/{image_id}/{forged}/image.dzi")
    assert status == 403
