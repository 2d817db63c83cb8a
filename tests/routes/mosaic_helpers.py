"""What the mosaic tests share: HST-like headers (a drizzled product and a distorted FLT exposure), the
stars of a field, and FITS files written from them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

RA, DEC = 150.1, 2.2
# sky positions of the stars: offsets in arcsec east and north of the centre
STARS = [(0.0, 0.0), (2.0, 1.5), (-1.8, 2.1), (1.6, -2.0), (-2.2, -1.4), (0.4, 2.6)]


def flt_header(size: int) -> fits.Header:
    """A raw-camera-like WCS: 0.028" by 0.025" pixels, axes 84 degrees apart, and SIP distortion."""
    sx, sy = 0.028 / 3600, 0.025 / 3600
    a, b = math.radians(190.0), math.radians(106.0)  # x towards the west, y about north: 84 degrees apart
    header = fits.Header()
    header.update({
        "CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "CRVAL1": RA, "CRVAL2": DEC,
        "CRPIX1": size / 2 + 0.5, "CRPIX2": size / 2 + 0.5, "RADESYS": "ICRS",
        "CD1_1": sx * math.cos(a), "CD1_2": sy * math.cos(b),
        "CD2_1": sx * math.sin(a), "CD2_2": sy * math.sin(b),
        "A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-5, "A_1_1": 1e-5, "A_0_2": -1e-5,
        "B_2_0": -1e-5, "B_1_1": 1.5e-5, "B_0_2": 2e-5,
    })
    return header


def drizzled_header(size: int) -> fits.Header:
    """North up, east left, square 0.025" pixels: a drizzled product of the same field."""
    scale = 0.025 / 3600
    header = fits.Header()
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": RA, "CRVAL2": DEC,
                   "CRPIX1": size / 2 + 0.5, "CRPIX2": size / 2 + 0.5, "CD1_1": -scale, "CD1_2": 0.0,
                   "CD2_1": 0.0, "CD2_2": scale, "RADESYS": "ICRS"})
    return header


def star_positions() -> tuple[np.ndarray, np.ndarray]:
    east, north = np.array(STARS).T / 3600
    return RA + east / math.cos(math.radians(DEC)), DEC + north


def write(path: Path, header: fits.Header, size: int) -> Path:
    wcs = WCS(header)
    ra, dec = star_positions()
    xs, ys = wcs.all_world2pix(ra, dec, 0)
    yy, xx = np.mgrid[0:size, 0:size]
    data = np.random.default_rng(3).normal(100.0, 2.0, (size, size))
    for x, y in zip(xs, ys, strict=True):
        data += 3000.0 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 2.5**2)
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
    return path
