"""The stretch a file is ingested with: adaptive histogram equalisation builds a static pyramid that matches
the dynamic tiles of the image's default display, and the administrator's default stretch applies to
files ingested from then on, unless a job asks for a stretch of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app.site_policy import Site
from app.tiles import pyramid, render
from app.tiles.scaling import Scaling
from tests.helpers import ingest
from tests.ingest.ingest_helpers import dynamic_tile, static_tile
from tests.routes.admin_helpers import admin_client, post, settings_form
from tests.routes.pages import text_of
from tests.tiles.render_helpers import two_regions


def write(folder: Path, name: str, data: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data).writeto(folder / name)
    return folder / name


async def ingest_one(archive: Any, path: Path, **options: Any) -> Any:
    [job] = await ingest(archive, path, **options)
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    return await archive.store.get_image(image_id)


def assert_static_matches_dynamic(archive: Any, image: Any) -> None:
    """The static pyramid built at ingest and the dynamic tiles of the image's default display agree: at
    full resolution the same picture (but for the JPEG's rounding), at a shrunk level, where the static
    pyramid is the full-resolution picture shrunk, within a few grey levels."""
    spec = render.default_spec(image.display)
    assert spec.stretch == "ahisteq"
    folder = archive.tile_folder(image.id)
    top = pyramid.max_level(image.width, image.height)
    quality = archive.settings.jpeg_quality
    for col, row in ((0, 0), (1, 1)):
        static = static_tile(folder, top, col, row)
        assert np.abs(static - dynamic_tile(folder, spec, top, col, row, quality)).max() <= 1
        assert np.abs(static - dynamic_tile(folder, spec, top, col, row)).mean() < 6  # JPEG's loss on noise
    static, dynamic = static_tile(folder, top - 2), dynamic_tile(folder, spec, top - 2)
    assert np.abs(static - dynamic).mean() < 8  # JPEG, and block-averaged noise mapped as its mean
    half = static.shape[1] // 2
    for part in (slice(0, half), slice(half, None)):
        assert static[:, part].mean() == pytest.approx(dynamic[:, part].mean(), abs=3)


async def test_an_ahisteq_ingest_matches_the_dynamic_tiles_of_its_default_display(archive, tmp_path):
    path = write(tmp_path / "in", "two.fits", two_regions())
    image = await ingest_one(archive, path, scaling={"stretch": "ahisteq"})
    assert (image.display["interval"], image.display["stretch"]) == ("zscale", "ahisteq")
    assert render.default_spec(image.display).text == "zscale~ahisteq~grey"
    assert_static_matches_dynamic(archive, image)
    # the faint half and the bright half both come out mid-grey, not dark and light
    full = static_tile(archive.tile_folder(image.id), pyramid.max_level(512, 512), 0, 1)
    assert full[:, :200].mean() == pytest.approx(128, abs=15)


async def test_the_default_stretch_applies_to_files_ingested_from_then_on(archive, client, account, tmp_path):
    before = await ingest_one(archive, write(tmp_path / "in", "before.fits", two_regions()[:, :300]))
    assert before.display["stretch"] == "linear"

    await admin_client(client, account)
    page = await text_of(await client.get("/admin"))
    assert 'name="default_stretch"' in page and "Default stretch for new images" in page
    response = await post(client, "/admin", settings_form(default_stretch="ahisteq"))
    assert "Saved: Default stretch for new images" in await text_of(response)
    assert Site.from_stored(await archive.store.site_settings()).default_stretch == "ahisteq"

    after = await ingest_one(archive, write(tmp_path / "in", "after.fits", two_regions()[:, 100:]))
    assert (after.display["interval"], after.display["stretch"]) == ("zscale", "ahisteq")
    assert_static_matches_dynamic(archive, after)
    # an interval of its own but no stretch: the site's stretch with it
    interval_only = await ingest_one(archive, write(tmp_path / "in", "minmax.fits", two_regions()[:, 50:]),
                                     scaling={"interval": "minmax"})
    assert (interval_only.display["interval"], interval_only.display["stretch"]) == ("minmax", "ahisteq")
    # a job's own stretch wins
    own = await ingest_one(archive, write(tmp_path / "in", "own.fits", two_regions()[:, 200:]),
                           scaling={"interval": "auto", "stretch": "sqrt"})
    assert own.display["stretch"] == "sqrt"
    # and an image ingested before keeps its own
    assert (await archive.store.get_image(before.id)).display["stretch"] == "linear"


async def test_a_bad_default_stretch_is_refused_with_a_message(archive, client, account):
    await admin_client(client, account)
    response = await post(client, "/admin", settings_form(default_stretch="gamma"))
    html = await text_of(response)
    assert "&#39;gamma&#39; is not one of: auto, linear, sqrt, log, asinh, histeq, ahisteq" in html
    assert Site.from_stored(await archive.store.site_settings()).default_stretch == "auto"


def test_a_bad_stretch_in_a_job_is_refused_with_the_choices():
    assert Scaling(stretch="ahisteq").stretch == "ahisteq"
    with pytest.raises(ValueError, match=r"unknown stretch 'gamma'; choose one of auto, linear, sqrt, log, "
                                         r"asinh, histeq, ahisteq$"):
        Scaling.from_dict({"stretch": "gamma"})
