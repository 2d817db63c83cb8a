"""One image on one tile: `project_tile`, which places only the blocks of cells the image may reach, gives
exactly what projecting the tile's every cell gives, for rotated fields across RA 0/360, near a pole and in
the south, and for an all-sky map whose corners lie off the sky."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from app.archive import Archive
from app.hips import geometry
from app.hips.live import member
from app.hips.projection import Positions, footprint_tiles, project, project_tile
from app.hips.survey import Sources
from app.settings import Settings
from tests.helpers import ingest
from tests.hips.hips_helpers import write_field
from tests.hips.survey_helpers import FIELDS, ORDER


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """No survey: these tests place images on tiles themselves (an all-sky map's survey takes minutes)."""
    return Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, job_lease=5.0, hips=False)


async def placed_tiles(archive: Archive, path: Path, order: int) -> tuple[object, str, list[int]]:
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    image = await archive.store.get_image(job.image_ids[0])
    assert image is not None
    chosen = member(archive, image)
    assert chosen is not None
    found = Sources(archive.settings.max_pixels).of(chosen)
    assert found is not None
    return found[0], found[1], footprint_tiles(chosen, order)


def every_cell(placed: object, path: str, order: int, npix: int) -> np.ndarray:
    return project(placed, path, Positions.of(*geometry.tile_lonlat(order, npix)))  # type: ignore[arg-type]


async def test_placing_only_the_blocks_an_image_reaches_changes_no_value(archive: Archive,
                                                                         tmp_path: Path) -> None:
    blank_tiles = 0
    for index, (ra, dec, rotation) in enumerate(FIELDS):
        path = write_field(tmp_path / f"field{index}.fits", ra, dec, rotation=rotation, seed=index)
        placed, science, tiles = await placed_tiles(archive, path, ORDER)
        assert tiles
        for npix in tiles:
            culled = project_tile(placed, science, ORDER, npix)  # type: ignore[arg-type]
            whole = every_cell(placed, science, ORDER, npix)
            assert np.array_equal(culled, whole, equal_nan=True), (index, npix)
            blank_tiles += not np.isfinite(whole).any()
    # the footprint's ring of neighbouring tiles: the image leaves some of them blank, and _paint skips them
    assert blank_tiles > 0


async def test_an_all_sky_map_is_placed_whole(archive: Archive, tmp_path: Path) -> None:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval = ["RA---AIT", "DEC--AIT"], [0.0, 0.0]
    wcs.wcs.crpix, wcs.wcs.cdelt = [60.5, 30.5], [-3.0, 3.0]
    path = tmp_path / "allsky.fits"
    yy, xx = np.mgrid[0:60, 0:120]
    fits.PrimaryHDU((xx + 2.0 * yy).astype(np.float32), wcs.to_header()).writeto(path)
    order = geometry.MIN_ORDER
    placed, science, tiles = await placed_tiles(archive, path, order)
    for npix in tiles[::37]:
        culled = project_tile(placed, science, order, npix)  # type: ignore[arg-type]
        assert np.array_equal(culled, every_cell(placed, science, order, npix), equal_nan=True), npix
