"""An image catalogued by the first phase of a two-phase ingest, opened in real Chromium from a real
`imagex serve` while its pyramids are still to be built: the page says what is happening and the viewer
draws the image from the original meanwhile (dynamic tiles); the notice goes away by itself once the
pyramids are there, and the next load uses them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from astropy.io import fits

from app.archive import Archive
from app.ingest.catalogue import catalogue_first
from app.ingest.jobs import JobRunner
from app.ingest.pipeline import run_job
from app.ingest.scan import job_for
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from tests.browser.mosaic_helpers import ALL_LOADED
from tests.browser.server_helpers import imagex_serve
from tests.browser.viewer_helpers import FULLY_LOADED, WATCH_VIEWER, Recorder
from tests.processes import free_port

SIZE = 600
HOLDER = "test-holder"  # the name this test claims the job under, so that the server leaves it


def serving(data: Path, **settings: str) -> dict[str, str]:
    """The environment of an `imagex serve` of `data` on a free port, one pool process, no survey."""
    env = {**os.environ, "IMAGEX_DATA": str(data), "IMAGEX_WORKERS": "1", "IMAGEX_PORT": str(free_port()),
           "IMAGEX_HOST": "127.0.0.1", "IMAGEX_HIPS": "false", **settings}
    env.pop("IMAGEX_SAMPLES", None)
    return env


async def opened(page: Any, url: str) -> tuple[Recorder, Any]:
    """The image page at `url` opened, its viewer watched: what it loads, and its tiling notice."""
    recorder = Recorder(page)
    await page.add_init_script(WATCH_VIEWER)
    response = await page.goto(url)
    assert response is not None and response.status == 200
    return recorder, page.locator("#tiling")


async def test_the_page_of_an_image_being_tiled_shows_the_viewer_once_it_is_tiled(tmp_path: Path, pool: Any,
                                                                                   page: Any) -> None:
    data = tmp_path / "var"
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)
    path = tmp_path / "field.fits"
    fits.PrimaryHDU(star_field(wcs, SIZE, SIZE), wcs.to_header()).writeto(path)
    archive = Archive(Settings.load(environ={}, data=str(data), workers=1, hips=False, two_phase_above=0),
                      pool=pool)
    await archive.startup()
    try:
        new = job_for(path)
        new.options["visibility"] = "public"
        [queued] = await archive.store.enqueue([new])
        assert await JobRunner(archive, concurrency=1, role="test").run_one()
        # its pyramids are this test's to build: claimed (with a long lease) before the server starts
        job = await archive.store.claim_job(HOLDER, 600)
        assert job is not None and job.id == queued.id and job.image_ids
        [image_id] = job.image_ids

        with imagex_serve(serving(data, IMAGEX_TWO_PHASE_ABOVE="0"), tmp_path / "serve.log") as url:
            recorder, notice = await opened(page, f"{url}/images/{image_id}")
            assert "its pyramids are being built" in await notice.inner_text()
            await page.wait_for_function(FULLY_LOADED, timeout=30_000)
            tiles = [url for url, status in recorder.tiles() if "image_files" in url]
            assert tiles and all("/display/" in url for url in tiles), "drawn from the original"
            assert all(status == 200 for _, status in recorder.tiles())
            # the readout's value, read from the original too
            await page.mouse.move(500, 400)
            await page.wait_for_function(
                "() => /\\d/.test(document.getElementById('readout-value').textContent)", timeout=30_000)

            # a mosaic of it draws it from its dynamic tiles too
            mosaic = await page.context.new_page()
            drawn = Recorder(mosaic)
            await mosaic.goto(f"{url}/mosaic?ids={image_id}")
            await mosaic.wait_for_function(ALL_LOADED, timeout=30_000)
            layer_tiles = [url for url, _ in drawn.tiles() if "image_files" in url]
            assert layer_tiles and all("/display/" in url for url in layer_tiles)
            assert drawn.errors == [] and all(status == 200 for _, status in drawn.tiles())
            await mosaic.close()

            outcome = await run_job(archive, job)
            assert outcome.state == "done", outcome.error
            assert await archive.store.finish_job(job.id, HOLDER, state="done", note=outcome.note,
                                                  image_ids=outcome.image_ids)
            # the page asks every 2 s; htmx removes the notice once the pyramids are there
            await notice.wait_for(state="detached", timeout=30_000)
            assert recorder.errors == []
            recorder = Recorder(page)
            await page.reload()
            await page.wait_for_function(FULLY_LOADED, timeout=30_000)
            tiles = [url for url, status in recorder.tiles() if "image_files" in url]
            assert tiles and not any("/display/" in url for url in tiles), "the static pyramid"
            assert recorder.errors == [] and all(status == 200 for _, status in recorder.tiles())
    finally:
        await archive.close()


async def test_the_page_of_an_image_read_from_its_header_loads_itself_again_once_it_is_read(
        tmp_path: Path, pool: Any, page: Any) -> None:
    """An image catalogued from its header alone (a large batch's first pass, app/ingest/catalogue.py): its
    page says its pixels are being read and shows no viewer; once its job has read and tiled it, the page
    loads itself again (htmx's HX-Refresh) and shows it from its pyramid."""
    data = tmp_path / "var"
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)
    path = tmp_path / "field.fits"
    fits.PrimaryHDU(star_field(wcs, SIZE, SIZE), wcs.to_header()).writeto(path)
    archive = Archive(Settings.load(environ={}, data=str(data), workers=1, hips=False,
                                    catalogue_first_from=1), pool=pool)
    await archive.startup()
    try:
        new = job_for(path)
        new.options["visibility"] = "public"
        queued = await archive.store.enqueue([new])
        assert len(await catalogue_first(archive, queued, HOLDER)) == 1
        # its reading is this test's to do: claimed (with a long lease) before the server starts
        job = await archive.store.claim_job(HOLDER, 600)
        assert job is not None and job.id == queued[0].id and job.image_ids
        [image_id] = job.image_ids

        with imagex_serve(serving(data), tmp_path / "serve.log") as url:
            recorder, notice = await opened(page, f"{url}/images/{image_id}")
            assert "its pixels are being read" in await notice.inner_text()
            assert await page.locator("#viewer").count() == 0
            listing = await page.context.new_page()
            await listing.goto(f"{url}/")
            assert "its pixels are being read" in await listing.locator(".card").first.inner_text()
            await listing.close()

            outcome = await run_job(archive, job)
            assert outcome.state == "done", outcome.error
            assert await archive.store.finish_job(job.id, HOLDER, state="done", note=outcome.note,
                                                  image_ids=outcome.image_ids)
            # the page asks every 2 s, and is loaded again once the image can be shown
            await page.wait_for_selector("#viewer", timeout=30_000)
            await page.wait_for_function(FULLY_LOADED, timeout=30_000)
            assert await page.locator("#tiling").count() == 0
            tiles = [url for url, status in recorder.tiles() if "image_files" in url]
            assert tiles and not any("/display/" in url for url in tiles), "the static pyramid"
            assert recorder.errors == [] and all(status == 200 for _, status in recorder.tiles())
    finally:
        await archive.close()
