"""FITS images with known point sources for the HiPS tests, written with astropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from app.samples import celestial_wcs

SIZE = 120  # pixels: small images keep the tests fast
SCALE = 10.0  # arcsec per pixel: the survey's deepest order is then 6


def point_sources(ra: float, dec: float, offsets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sky positions (degrees) at offsets in pixels from the image's centre (x east to the left, y north)."""
    wcs = celestial_wcs(ra, dec, SIZE, SIZE, scale_arcsec=SCALE)
    centre = (SIZE - 1) / 2
    found = []
    for dx, dy in offsets:
        sky = wcs.pixel_to_world(centre + dx, centre + dy).icrs
        found.append((float(sky.ra.deg), float(sky.dec.deg)))
    return found


def write_field(path: Path, ra: float, dec: float, *, sources: list[tuple[float, float]] = (),
                level: float = 100.0, seed: int = 1, rotation: float = 0.0) -> Path:
    """A SIZE x SIZE image centred on (ra, dec): a smooth gradient (so that interpolation is exact enough to
    compare), a little noise and Gaussian point sources (sigma 2 pixels) at the given sky positions."""
    wcs = celestial_wcs(ra, dec, SIZE, SIZE, scale_arcsec=SCALE, rotation_deg=rotation)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    data = level + 0.3 * xx + 0.2 * yy + rng.normal(0, 0.2, (SIZE, SIZE))
    for sra, sdec in sources:
        sx, sy = wcs.all_world2pix([[sra, sdec]], 0)[0]
        data += 1000.0 * np.exp(-0.5 * ((xx - sx) ** 2 + (yy - sy) ** 2) / 2.0**2)
    header = wcs.to_header()
    header["OBJECT"] = path.stem
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path, overwrite=True)
    return path
