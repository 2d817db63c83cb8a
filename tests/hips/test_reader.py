"""The public survey read back by an independent reader: reproject's HiPS reader (`hips_as_dask_array`, its
own HEALPix/HPX geometry and the survey's `properties`) gives each image's values at each of its pixels'
sky positions, on the equator across RA 0/360, near the north pole and rotated in the south."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from reproject.hips import hips_as_dask_array

from app.archive import Archive
from app.hips import geometry
from tests.helpers import ingest
from tests.hips.hips_helpers import SCALE, SIZE, write_field

FIELDS = [(0.02, 0.0, 0.0), (10.0, 89.8, 0.0), (200.0, -60.0, -35.0)]


async def test_reprojects_hips_reader_gives_each_images_values(archive: Archive, tmp_path: Path) -> None:
    paths = [write_field(tmp_path / f"field{index}.fits", ra, dec, seed=index, rotation=rotation)
             for index, (ra, dec, rotation) in enumerate(FIELDS)]
    jobs = await ingest(archive, tmp_path, visibility="public")
    assert {job.state for job in jobs} == {"done"}
    await archive.hips.settle()
    assert not archive.hips.last_error
    folder = archive.settings.data / "hips" / "public"
    order = geometry.order_for_scale(SCALE)
    array, hpx = hips_as_dask_array(str(folder))  # the deepest order the properties name
    assert hpx.wcs.ctype[0].endswith("HPX")
    for path in paths:
        with fits.open(path) as hdus:
            data = np.asarray(hdus[0].data, dtype=np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wcs = WCS(hdus[0].header)
        yy, xx = np.mgrid[3:SIZE - 3:3, 3:SIZE - 3:3]
        sky = wcs.pixel_to_world(xx.ravel(), yy.ravel())
        column, row = (np.round(value).astype(int) for value in hpx.world_to_pixel(sky))
        inside = (row >= 0) & (row < array.shape[0]) & (column >= 0) & (column < array.shape[1])
        assert inside.all(), path.name
        back = np.asarray(array.vindex[row, column].compute())
        assert np.isfinite(back).all(), (path.name, int(np.isnan(back).sum()))
        expected = data[yy.ravel(), xx.ravel()]
        robust = np.percentile(expected, 99.5) - np.percentile(expected, 0.5)
        # nearest HiPS pixel (half a HiPS pixel at most, against an image pixel of SCALE"): the gradient's
        # step over that distance bounds the difference
        assert geometry.pixel_size_arcsec(order + 9) <= SCALE
        assert np.median(np.abs(back - expected)) < 0.01 * robust, path.name
