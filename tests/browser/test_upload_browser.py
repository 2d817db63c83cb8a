"""Uploading from the browser, in headless Chromium against a real `imagex serve`: files chosen in the
page's file input and dropped on it are sent with their progress shown, a FITS file ends in a link to the
viewer, which opens; content that is not an image is refused with the server's message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.accounts_helpers import admin_password, log_in
from tests.browser.server_helpers import Server
from tests.browser.viewer_helpers import FULLY_LOADED

pytestmark = pytest.mark.browser
NAME = "m31 <deep> & wide.fits"  # markup characters: the page must show them as text


def write_field(folder: Path) -> Path:
    """A 600x600 float32 star field (1.4 MB) with a real WCS and no OBJECT card: the image is named after
    the client's file."""
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 600, 600)
    path = folder / NAME
    fits.PrimaryHDU(star_field(wcs, 600, 600, seed=7), wcs.to_header()).writeto(path, overwrite=True)
    return path


async def test_files_chosen_or_dropped_are_uploaded_and_end_in_the_viewer(server: Server, page, tmp_path):
    field = write_field(tmp_path)
    page_named_fits = tmp_path / "login.fits"
    page_named_fits.write_text("<!DOCTYPE html><html><body>Please log in</body></html>")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await log_in(page, server, "admin", admin_password(server))
    await page.click("nav >> text=Upload")
    await page.wait_for_url(server.url + "/upload")
    used_before = await page.locator("#storage-used").inner_text()
    await page.set_input_files("#files", [str(field), str(page_named_fits)])

    items = page.locator("#uploads li")
    await page.wait_for_function("() => document.querySelectorAll('#uploads li').length === 2")
    good, bad = items.nth(0), items.nth(1)
    assert await good.locator(".name").inner_text() == NAME

    # the bar follows the bytes sent, then the row follows the ingest until the image is ready
    await good.locator(".status.ok").wait_for(timeout=30_000)
    assert await good.locator("progress").evaluate("bar => bar.value") == 100
    assert re.fullmatch(r"100% sent \(1\.4\d MB\)", await good.locator(".status").inner_text())
    link = good.locator("a.view")
    await link.wait_for(timeout=60_000)
    assert await link.inner_text() == NAME
    assert await good.locator(".ingest").get_attribute("data-state") == "done"
    # the page's storage line follows: the new file's bytes are counted as soon as it is catalogued
    await page.wait_for_function("(before) => document.getElementById('storage-used').innerText !== before",
                                 arg=used_before, timeout=30_000)
    assert re.fullmatch(r"You use [\d.]+ MB of your [\d.]+ [KMGT]?B quota\.",
                        await page.locator("#storage-used").inner_text())

    await bad.locator(".status.bad").wait_for(timeout=30_000)
    # a refused upload's bar says so (to the eye and to a screen reader), the accepted one's does not
    assert await bad.locator("progress.refused").count() == 1
    assert await bad.locator("progress").get_attribute("aria-label") == "upload of login.fits refused"
    assert await good.locator("progress.refused").count() == 0
    assert await bad.locator(".status").inner_text() == (
        "login.fits: this is an HTML page, not an image; ImageX reads FITS (also tile-compressed and "
        "gzipped), DICOM, Gatan DM3/DM4, TIFF (also GeoTIFF, OME-TIFF and ImageJ), PNG and JPEG. Nothing was "
        "kept.")

    # a file dropped on the page goes the same way
    await page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["just some notes"], "notes.fits"));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer}));
    }""")
    dropped = items.nth(2)
    await dropped.locator(".status.bad").wait_for(timeout=30_000)
    assert "notes.fits: this is a text file, not an image" in await dropped.locator(".status").inner_text()

    await link.click()
    await page.wait_for_url(re.compile(re.escape(server.url) + r"/images/\w+$"))
    await page.wait_for_function(FULLY_LOADED, timeout=30_000)
    assert await page.locator("h1").inner_text() == NAME
    assert "upload" in await page.locator("p.meta").inner_text()
    assert errors == []
