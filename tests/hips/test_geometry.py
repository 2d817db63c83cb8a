"""Tile names, orders and where a tile's pixels lie, against the HiPS 1.0 standard and hipsgen's tile WCS."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from app.hips import geometry


@pytest.mark.parametrize(("order", "npix", "extension", "expected"), [
    (3, 0, "png", "Norder3/Dir0/Npix0.png"),
    (3, 767, "jpg", "Norder3/Dir0/Npix767.jpg"),
    (7, 9999, "fits", "Norder7/Dir0/Npix9999.fits"),
    (7, 10000, "fits", "Norder7/Dir10000/Npix10000.fits"),
    (9, 123456, "png", "Norder9/Dir120000/Npix123456.png"),
])
def test_tile_names(order: int, npix: int, extension: str, expected: str) -> None:
    assert str(geometry.tile_path(order, npix, extension)) == expected


@pytest.mark.parametrize(("scale", "order"), [
    (3600.0, 3), (60.0, 3), (10.0, 6), (1.0, 9), (0.25, 11), (0.2, 12), (0.001, geometry.MAX_ORDER)])
def test_order_from_pixel_scale(scale: float, order: int) -> None:
    assert geometry.order_for_scale(scale) == order
    # the tile pixels are finer than the image's, and the order above them would not be
    assert geometry.pixel_size_arcsec(order + 9) <= scale or order == geometry.MAX_ORDER
    if order > geometry.MIN_ORDER:
        assert geometry.pixel_size_arcsec(order + 8) > scale


def test_survey_order_is_that_of_the_finest_image() -> None:
    assert geometry.survey_order([60.0, 10.0, 1.0]) == 9
    assert geometry.survey_order([]) == geometry.MIN_ORDER


@pytest.mark.parametrize(("order", "npix"), [(3, 0), (3, 301), (3, 767), (4, 1000), (6, 20330), (8, 500000)])
def test_pixels_lie_where_the_hpx_wcs_of_hipsgen_says(order: int, npix: int) -> None:
    """A FITS tile's pixel (FITS rows bottom-up) and the same pixel of the PNG tile (rows top-down) are at
    the HEALPix cell centres `tile_lonlat` gives."""
    header = fits.Header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, 512, 512
    for keyword, value in geometry.hpx_header(order, npix).items():
        header[keyword] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(header)
    lon, lat = geometry.tile_lonlat(order, npix)
    rows, cols = np.meshgrid(np.arange(0, 512, 37), np.arange(0, 512, 41), indexing="ij")
    ra, dec = wcs.all_pix2world(cols.ravel(), 511 - rows.ravel(), 0)
    d_ra = (ra - lon[rows, cols].ravel() + 180) % 360 - 180
    separation = np.hypot(d_ra * np.cos(np.radians(dec)), dec - lat[rows, cols].ravel()) * 3600
    assert separation.max() < 1e-6 * geometry.pixel_size_arcsec(order + 9) + 1e-6


def test_children_and_parents() -> None:
    assert geometry.parents(6, [20330, 20331]) == {5: {5082}, 4: {1270}, 3: {317}}
    assert [q for q, _, _ in geometry.child_offsets()] == [0, 1, 2, 3]


def test_allsky_layout() -> None:
    assert geometry.allsky_size() == (29 * 64, 27 * 64)
    assert geometry.allsky_place(0) == (0, 0)
    assert geometry.allsky_place(28) == (64, 64)
    assert geometry.allsky_place(767) == (28 * 64, 11 * 64)
