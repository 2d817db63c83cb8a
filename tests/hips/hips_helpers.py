"""FITS images with known point sources for the HiPS tests, written with astropy, and a survey's values read
back from its FITS tiles."""

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


def survey_values(folder: Path, order: int, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The survey's values at ICRS positions (degrees), read back from its FITS tiles through each tile's
    own HPX WCS (astropy), not through app.hips.geometry: NaN where there is no tile."""
    import warnings

    import astropy.units as u
    from astropy.wcs import WCS
    from astropy_healpix import lonlat_to_healpix

    tiles = np.asarray(lonlat_to_healpix(lon * u.deg, lat * u.deg, 1 << order, order="nested"))
    out = np.full(lon.shape, np.nan)
    for npix in np.unique(tiles):
        path = folder / f"Norder{order}" / f"Dir{(npix // 10000) * 10000}" / f"Npix{npix}.fits"
        if not path.is_file():
            continue
        with fits.open(path) as hdus:
            data, header = hdus[0].data, hdus[0].header
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
            here = tiles == npix
            x, y = wcs.all_world2pix(lon[here], lat[here], 0)
        column = np.clip(np.round(x).astype(int), 0, data.shape[1] - 1)
        row = np.clip(np.round(y).astype(int), 0, data.shape[0] - 1)
        out[here] = data[row, column]
    return out
