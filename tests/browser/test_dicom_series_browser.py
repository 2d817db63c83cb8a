"""A CT series of single-frame DICOM files in headless Chromium against a real `imagex serve`: one image,
its plane slider steps through the slices in order along the slice normal, labelled with their position
in mm, and the readout gives each slice's own Hounsfield units."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pydicom
import pytest

from app.samples_fields import ct_series
from tests.browser.planes_helpers import ITEM_RECT, shows
from tests.browser.server_helpers import Server, ingest_and_serve, screenshot
from tests.browser.viewer_helpers import FULLY_LOADED, Recorder
from tests.ingest.ingest_helpers import value_at

pytestmark = pytest.mark.browser

SLICES = 5
# inside the sphere's cross-section on the three middle slices only: 600 HU more there
PROBE = (88, 64)


@pytest.fixture(scope="module")
def series_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("series")
    slices = ct_series(root / "files", SLICES)
    with ingest_and_serve(root, *[slices[i] for i in (3, 0, 4, 2, 1)]) as server:
        server.slices = slices  # type: ignore[attr-defined]
        yield server


async def readout_at(page, x: int, y: int, plane: int) -> float:
    """Move the cursor over image pixel (x, y) (from another pixel first: a fresh reading) and read the
    value the readout shows for plane `plane` (from 1)."""
    await page.evaluate("() => window.scrollTo(0, 0)")  # the slider's page may be scrolled past the image
    box = await page.locator("#viewer").bounding_box()
    assert box is not None
    left, top, width, height = await page.evaluate(ITEM_RECT)
    for u, v in ((10, 10), (x, y)):
        await page.mouse.move(box["x"] + left + width * (u + 0.5) / 128,
                              box["y"] + top + height * (v + 0.5) / 128)
        await page.wait_for_function(
            "([where, plane]) => document.getElementById('readout').textContent === where && "
            "/^value -?[0-9]/.test(document.getElementById('readout-value').textContent) && "
            "document.getElementById('readout-value').textContent.includes('(plane ' + plane + ' of')",
            arg=[f"x {u}, y {v}", plane], timeout=30_000)
    text = await page.locator("#readout-value").text_content()
    match = re.match(r"value (-?[0-9.]+)", text or "")
    assert match, text
    return float(match.group(1))


async def test_a_series_is_one_image_whose_slider_steps_through_its_slices(page, series_server: Server):
    listed = series_server.get("/api/images")["images"]
    assert len(listed) == 1
    image = series_server.image
    assert image["format"] == "dicom" and image["planes"]["count"] == SLICES
    slices = series_server.slices  # type: ignore[attr-defined]
    recorder = Recorder(page)
    response = await page.goto(series_server.url + image["url"])
    assert response is not None and response.status == 200
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    label = page.locator("#plane-label")
    first = pydicom.dcmread(slices[0], stop_before_pixels=True).ImagePositionPatient[2]
    assert await label.text_content() == f"1 of {SLICES}: position {round(float(first), 3):g} mm"
    assert await readout_at(page, *PROBE, 1) == value_at(slices[0], *PROBE)

    await page.locator("#plane-controls input[name=plane]").fill("2")
    await shows(page, "/planes/2/display/")
    assert await label.text_content() == f"3 of {SLICES}: position {round(float(first) + 10, 3):g} mm"
    assert await readout_at(page, *PROBE, 3) == value_at(slices[2], *PROBE)
    assert value_at(slices[2], *PROBE) - value_at(slices[0], *PROBE) == 600  # the sphere, only here
    await screenshot(page, "viewer-dicom-series.png")

    await page.locator("body").press("]")
    await shows(page, "/planes/3/display/")
    assert await label.text_content() == f"4 of {SLICES}: position {round(float(first) + 15, 3):g} mm"
    failed = [(url, status) for url, status in recorder.tiles() if status >= 400]
    assert failed == []
