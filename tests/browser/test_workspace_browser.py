"""The image page at 1400x900 in headless Chromium: the tools (go to, display, planes) sit beside the image,
so it stays in view while they change it; "Full page" fills the window with the image, its readout and
the tools, and Escape leaves it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.planes_helpers import write_cube
from tests.browser.server_helpers import Server, ingest_and_serve, screenshot
from tests.browser.viewer_helpers import FULLY_LOADED

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def cube_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("workspace")
    with ingest_and_serve(root, write_cube(root)) as server:
        yield server


def inside(box: dict[str, float], width: int, height: int) -> bool:
    return box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width and \
        box["y"] + box["height"] <= height


async def test_the_tools_sit_beside_the_image_and_full_page_keeps_them(page, cube_server: Server):
    await page.set_viewport_size({"width": 1400, "height": 900})
    response = await page.goto(cube_server.url + cube_server.image["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    viewer = await page.locator("#viewer").bounding_box()
    assert viewer is not None
    for tool in ("#goto", "#display-controls", "#plane-controls"):
        box = await page.locator(tool).bounding_box()
        assert box is not None, tool
        assert box["x"] >= viewer["x"] + viewer["width"], tool  # beside the image, not below it
    display = await page.locator("#display-controls select[name=stretch]").bounding_box()
    assert display is not None and display["y"] < viewer["y"] + viewer["height"]  # in view with the image
    assert await page.locator(".openseadragon-container [title='Toggle full page']").count() == 0
    await screenshot(page, "viewer-tools.png")

    await page.click("#full-page")
    await page.wait_for_function("() => document.getElementById('workspace').classList.contains('full')")
    await page.wait_for_function(
        "() => document.getElementById('viewer').getBoundingClientRect().height > 780", timeout=30_000)
    full = await page.locator("#viewer").bounding_box()
    assert full is not None and full["width"] > 900 and inside(full, 1400, 900)
    for kept in ("#readout", "#display-controls select[name=stretch]", "#plane-controls input[name=plane]"):
        box = await page.locator(kept).bounding_box()
        assert box is not None and inside(box, 1400, 900), kept
    # the readout still reads the image under the cursor
    await page.mouse.move(full["x"] + full["width"] / 2, full["y"] + full["height"] / 2)
    await page.wait_for_function(
        "() => /^x \\d+, y \\d+$/.test(document.getElementById('readout').textContent)", timeout=30_000)
    assert await page.get_attribute("#full-page", "aria-pressed") == "true"

    await page.keyboard.press("Escape")
    await page.wait_for_function("() => !document.getElementById('workspace').classList.contains('full')")
    back = await page.locator("#viewer").bounding_box()
    assert back is not None and abs(back["height"] - viewer["height"]) < 2
