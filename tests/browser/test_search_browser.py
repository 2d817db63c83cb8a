"""The seed's example end to end in headless Chromium against a real server: an administrator builds a
date range on DATE with alternates DATETIME and DATE-OBS in the search builder; a visitor then finds images
by time whichever keyword their header used, the results update in place as the form changes, and the URL
holds the query so a bookmark reproduces it."""

from __future__ import annotations

import subprocess

import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from tests.browser.accounts_helpers import admin_password, log_in
from tests.browser.server_helpers import BIN, Server, screenshot

pytestmark = pytest.mark.browser
DATED = {"a.fits": {"DATE-OBS": "2026-01-05T03:00:00", "OBJECT": "Alpha"},
         "b.fits": {"DATE": "2026-01-20", "OBJECT": "Bravo"},
         "c.fits": {"DATETIME": "2026-03-01T12:00:00", "OBJECT": "Charlie"}}


def add_dated_images(server: Server) -> None:
    folder = server.data.parent / "dated"
    folder.mkdir(exist_ok=True)
    for name, cards in DATED.items():
        wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 64, 64)
        header = wcs.to_header()
        header.update(cards)
        fits.PrimaryHDU(star_field(wcs, 64, 64), header).writeto(folder / name, overwrite=True)
    env = {"IMAGEX_DATA": str(server.data), "PATH": str(BIN)}
    done = subprocess.run([str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", "public",
                           str(folder)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_an_admin_builds_a_date_search_and_a_visitor_uses_it(server, page):
    add_dated_images(server)
    await log_in(page, server, "admin", admin_password(server))
    await page.goto(server.url + "/admin/search")
    # the keywords present are offered, with their counts
    assert await page.locator("table.keyword-counts td code", has_text="DATETIME").count() == 1
    await page.select_option("#element-type", "date")
    await page.wait_for_selector("#element-keywords")
    await page.fill("#element-label", "Observation date")
    await page.fill("#element-keywords", "DATE, DATETIME, DATE-OBS")
    await page.click("#element-form button[type=submit]")
    await page.wait_for_selector("text=Added “Observation date” to the search form.")
    assert await page.locator("#element-observation_date td", has_text="date range").count() == 1

    await page.click(".who button.link")  # log out: a guest searches
    await page.goto(server.url + "/search")
    assert await page.locator("#element-observation_date legend").inner_text() == "Observation date"
    await page.fill("input[name=observation_date_from]", "2026-01-01")
    await page.fill("input[name=observation_date_to]", "2026-01-31")
    # no button: the results follow the form
    await page.wait_for_function(
        "() => document.querySelector('#results .count strong')?.textContent === '2'", timeout=30_000)
    shown = await page.locator("#results table.results tbody td:nth-child(3) a").all_inner_texts()
    await screenshot(page, "search.png")
    assert sorted(shown) == ["Alpha", "Bravo"]
    # nothing selected: Download and Open cannot be pressed; one image selected, both can; select all too
    download = page.locator("button[formaction='/search/download']")
    opening = page.locator("button[formaction='/search/open']")
    await page.wait_for_function("() => document.querySelector('button[data-needs-checked]').disabled")
    assert await download.is_disabled() and await opening.is_disabled()
    await page.locator("#selection input[name=ids]").first.check()
    assert await download.is_enabled() and await opening.is_enabled()
    await page.locator("#selection input[name=ids]").first.uncheck()
    assert await download.is_disabled()
    await page.locator("#select-all").check()
    assert await download.is_enabled() and await opening.is_enabled()
    await page.locator("#select-all").uncheck()
    assert await opening.is_disabled()
    # the URL holds the query: opening it again shows the same results, form filled in
    await page.wait_for_function("() => location.search.includes('observation_date_to=2026-01-31')")
    bookmark = page.url
    await page.goto(bookmark)
    assert await page.locator("#results .count strong").inner_text() == "2"
    assert await page.locator("input[name=observation_date_from]").input_value() == "2026-01-01"
    # widening the range to March brings the DATETIME image in; a bad range says why
    await page.fill("input[name=observation_date_to]", "2026-03-31")
    await page.wait_for_function(
        "() => document.querySelector('#results .count strong')?.textContent === '3'", timeout=30_000)
    await page.fill("input[name=observation_date_from]", "2026-04-01")
    await page.wait_for_selector("#results .error", timeout=30_000)
    assert "is after to" in await page.locator("#results .error").inner_text()
