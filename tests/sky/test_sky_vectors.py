"""`sky_vectors`, the pixel-to-sky step under the readout, the coverage and the HiPS tiles, against
astropy's own `pixel_to_world(...).icrs` for WCSs in every celestial frame FITS names, with either axis
order: the frame's rotation to ICRS where there is one, astropy's coordinates where there is not (FK4)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from app.sky import readout
from app.sky.readout import sky_vectors

FRAMES = {
    "icrs": ("RA---TAN", "DEC--TAN", {"RADESYS": "ICRS"}),
    "fk5 j2000": ("RA---TAN", "DEC--TAN", {"RADESYS": "FK5", "EQUINOX": 2000.0}),
    "fk5 j1975": ("RA---SIN", "DEC--SIN", {"RADESYS": "FK5", "EQUINOX": 1975.0}),
    "fk4 b1950": ("RA---TAN", "DEC--TAN", {"RADESYS": "FK4", "EQUINOX": 1950.0}),
    "no frame named": ("RA---ZEA", "DEC--ZEA", {}),
    "galactic": ("GLON-CAR", "GLAT-CAR", {}),
    "ecliptic": ("ELON-TAN", "ELAT-TAN", {"DATE-OBS": "2011-05-04T00:00:00"}),
    "axes swapped": ("DEC--TAN", "RA---TAN", {"RADESYS": "FK5", "EQUINOX": 2000.0}),
}


def wcs_of(lon: str, lat: str, cards: dict, crval=(187.3, 62.1)) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [lon, lat]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [200.5, 150.5]
    wcs.wcs.cdelt = [-0.02, 0.02]
    header = wcs.to_header()
    for keyword, value in cards.items():
        header[keyword] = value
    return WCS(header).celestial


@pytest.mark.parametrize("name", list(FRAMES))
def test_sky_vectors_are_astropys_positions(name):
    lon, lat, cards = FRAMES[name]
    wcs = wcs_of(lon, lat, cards, crval=(62.1, 187.3) if name == "axes swapped" else (187.3, 62.1))
    xs, ys = np.meshgrid(np.linspace(-0.5, 399.5, 23), np.linspace(-0.5, 299.5, 17))
    got = sky_vectors(wcs, xs.ravel(), ys.ravel())
    coords = wcs.pixel_to_world(xs.ravel(), ys.ravel()).icrs
    ra, dec = coords.ra.rad, coords.dec.rad
    wanted = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)
    separation = np.degrees(np.linalg.norm(got - wanted, axis=1)) * 3600
    assert separation.max() < 1e-5, f"{name}: up to {separation.max():.2e} arcsec from astropy"


def test_only_frames_that_turn_into_icrs_by_a_rotation_take_the_short_way():
    assert readout._to_icrs(wcs_of(*FRAMES["icrs"])) is readout._IDENTITY
    fk5 = readout._to_icrs(wcs_of(*FRAMES["fk5 j1975"]))
    assert fk5 is not None and np.allclose(fk5 @ fk5.T, np.eye(3), atol=1e-12)
    assert readout._to_icrs(wcs_of(*FRAMES["fk4 b1950"])) is None  # E-terms: not a rotation


def test_undefined_pixels_are_nan_rows():
    wcs = wcs_of("RA---AIT", "DEC--AIT", {"RADESYS": "FK5", "EQUINOX": 2000.0}, crval=(0.0, 0.0))
    wcs.wcs.cdelt = [-1.0, 1.0]
    got = sky_vectors(wcs, np.array([200.0, 200.0 + 300.0]), np.array([150.0, 150.0 + 200.0]))
    assert np.all(np.isfinite(got[0])) and np.all(np.isnan(got[1]))
