"""Sample images written with astropy and libvips: star fields with real celestial WCS, one rotated and
overlapping its neighbour, a tile-compressed file, a multi-extension file and an ordinary PNG."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from app.archive import Archive

FIELD_RA = 150.10
FIELD_DEC = 2.20


def celestial_wcs(ra: float, dec: float, width: int, height: int, *, scale_arcsec: float = 1.0,
                  rotation_deg: float = 0.0, projection: str = "TAN") -> Any:
    """A celestial WCS centred on (ra, dec), with east to the left and north up before rotation."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{projection}", f"DEC--{projection}"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    scale = scale_arcsec / 3600.0
    theta = np.deg2rad(rotation_deg)
    wcs.wcs.cd = np.array([[-scale * np.cos(theta), scale * np.sin(theta)],
                           [scale * np.sin(theta), scale * np.cos(theta)]])
    wcs.wcs.radesys = "ICRS"
    return wcs


def star_catalog(seed: int = 7, count: int = 900, radius_deg: float = 0.35) -> np.ndarray:
    """Stars around the sample field: (ra, dec, flux) rows, shared by every sample so overlaps agree."""
    rng = np.random.default_rng(seed)
    ra = FIELD_RA + rng.uniform(-radius_deg, radius_deg, count) / np.cos(np.deg2rad(FIELD_DEC))
    dec = FIELD_DEC + rng.uniform(-radius_deg, radius_deg, count)
    flux = 10 ** rng.uniform(2.0, 5.0, count)
    return np.column_stack([ra, dec, flux])


def star_field(wcs: Any, width: int, height: int, *, seed: int = 1, sky: float = 100.0,
               noise: float = 5.0, fwhm_px: float = 3.0) -> np.ndarray:
    """Sky background, noise and Gaussian stars placed through `wcs`: a float32 array (rows, columns)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(sky, noise, (height, width)).astype(np.float32)
    stars = star_catalog()
    x, y = wcs.all_world2pix(stars[:, 0], stars[:, 1], 0)
    sigma = fwhm_px / 2.3548
    half = int(4 * sigma) + 1
    offsets = np.arange(-half, half + 1)
    for sx, sy, flux in zip(x, y, stars[:, 2], strict=True):
        cx, cy = round(sx), round(sy)
        if not (-half <= cx < width + half and -half <= cy < height + half):
            continue
        xs, ys = cx + offsets, cy + offsets
        gx = np.exp(-0.5 * ((xs - sx) / sigma) ** 2)
        gy = np.exp(-0.5 * ((ys - sy) / sigma) ** 2)
        stamp = (flux / (2 * np.pi * sigma**2)) * np.outer(gy, gx)
        keep_x = (xs >= 0) & (xs < width)
        keep_y = (ys >= 0) & (ys < height)
        image[np.ix_(ys[keep_y], xs[keep_x])] += stamp[np.ix_(keep_y, keep_x)].astype(np.float32)
    return image


def _header(wcs: Any, **cards: Any) -> Any:
    header = wcs.to_header()
    for keyword, value in cards.items():
        header[keyword.replace("_", "-")] = value
    return header


def write_samples(folder: Path, *, size: int = 1024) -> list[Path]:
    """Write the sample set into `folder` and return the paths."""
    import pyvips
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    wcs_a = celestial_wcs(FIELD_RA, FIELD_DEC, size, size)
    data_a = star_field(wcs_a, size, size, seed=1)
    data_a[10:14, 10:14] = np.nan  # a few dead pixels: NaN renders black
    header_a = _header(wcs_a, OBJECT="Sample field A", TELESCOP="ImageX Sim", INSTRUME="SimCam",
                       FILTER="r", EXPTIME=120.0, DATE_OBS="2026-03-14T21:05:00", OBSERVER="ImageX")
    header_a["HISTORY"] = "Written by imagex samples"
    paths.append(folder / "field_a.fits")
    fits.PrimaryHDU(data_a, header_a).writeto(paths[-1], overwrite=True)

    # rotated by 30 degrees and shifted 5 arcmin east: it overlaps field A
    ra_b = FIELD_RA + (5 / 60) / np.cos(np.deg2rad(FIELD_DEC))
    wcs_b = celestial_wcs(ra_b, FIELD_DEC + 2 / 60, size, size, rotation_deg=30.0)
    data_b = star_field(wcs_b, size, size, seed=2)
    header_b = _header(wcs_b, OBJECT="Sample field B (rotated)", TELESCOP="ImageX Sim", FILTER="r",
                       EXPTIME=300.0, DATE_OBS="2026-03-15T01:40:12")
    paths.append(folder / "field_b_rotated.fits")
    # 16-bit integers with BZERO/BSCALE, as many cameras write them
    hdu_b = fits.PrimaryHDU(header=header_b)
    hdu_b.data = np.clip(data_b, 0, 65000).astype(np.float32)
    hdu_b.scale("int16", bzero=32768)
    hdu_b.writeto(paths[-1], overwrite=True)

    wcs_c = celestial_wcs(FIELD_RA - 0.15, FIELD_DEC - 0.1, size, size, scale_arcsec=1.5)
    data_c = star_field(wcs_c, size, size, seed=3, sky=300.0, noise=12.0)
    header_c = _header(wcs_c, OBJECT="Sample field C (tile-compressed)", FILTER="g", EXPTIME=60.0,
                       DATE_OBS="2026-03-16T22:10:00")
    paths.append(folder / "field_c.fits.fz")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data_c, header_c, compression_type="RICE_1",
                                                       quantize_level=16)]).writeto(paths[-1], overwrite=True)

    half = size // 2
    primary = fits.PrimaryHDU(header=fits.Header([("OBJECT", "Sample mosaic camera"),
                                                  ("TELESCOP", "ImageX Sim"), ("EXPTIME", 90.0),
                                                  ("DATE-OBS", "2026-03-17T03:00:00")]))
    extensions = []
    for index, offset in enumerate((-1, 1), start=1):
        wcs_e = celestial_wcs(FIELD_RA + offset * half / 3600 / 2, FIELD_DEC + 0.2, half, half)
        data_e = star_field(wcs_e, half, half, seed=10 + index)
        header_e = _header(wcs_e, CCDNAME=f"CCD{index}", INHERIT=True)  # the primary's cards are its own too
        extensions.append(fits.ImageHDU(data_e, header_e, name=f"SCI{index}"))
    paths.append(folder / "multi_extension.fits")
    fits.HDUList([primary, *extensions]).writeto(paths[-1], overwrite=True)

    # a radio spectral cube: 21 cm emission of a rotating disc, its line moving across the planes
    paths.append(folder / "hi_cube.fits")
    fits.PrimaryHDU(*_spectral_cube(size // 4)).writeto(paths[-1], overwrite=True)

    yy, xx = np.mgrid[0:384, 0:512]
    rgb = np.dstack([(xx / 2) % 256, (yy / 1.5) % 256, ((xx + yy) / 3.5) % 256]).astype(np.uint8)
    paths.append(folder / "colour_gradient.png")
    pyvips.Image.new_from_array(rgb, interpretation="srgb").pngsave(str(paths[-1]))

    from app.samples_fields import write_field_samples

    return paths + write_field_samples(folder)


def _spectral_cube(side: int, planes: int = 24) -> tuple[np.ndarray, Any]:
    """A cube (planes, side, side) along frequency around the 21 cm line: a tilted rotating disc, each
    plane lit where the disc's line-of-sight velocity matches the plane's, on faint noise."""
    rest, channel = 1.420405752e9, 50e3  # Hz; 50 kHz is about 10.5 km/s
    wcs = celestial_wcs(FIELD_RA + 0.2, FIELD_DEC - 0.2, side, side, scale_arcsec=6.0)
    header = wcs.to_header()
    header.update({"CTYPE3": "FREQ", "CUNIT3": "Hz", "CRPIX3": (planes + 1) / 2, "CRVAL3": rest,
                   "CDELT3": channel, "SPECSYS": "LSRK", "RESTFRQ": rest, "BUNIT": "Jy/beam",
                   "OBJECT": "Sample HI cube", "TELESCOP": "ImageX Sim", "DATE-OBS": "2026-03-18T02:00:00"})
    yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2
    radius = np.hypot(xx, yy * 2.0) / (side / 2.5)  # a disc seen at 60 degrees
    velocity = 200e3 * np.tanh(3 * radius) * np.divide(xx, np.hypot(xx, yy * 2.0) + 1e-9)  # m/s
    brightness = np.exp(-radius ** 2 * 2)
    channels = (np.arange(planes) - (planes - 1) / 2) * -channel / rest * 299792458.0  # velocity of each
    width = 15e3
    cube = brightness[None] * np.exp(-0.5 * ((velocity[None] - channels[:, None, None]) / width) ** 2)
    cube += np.random.default_rng(4).normal(0, 0.01, cube.shape)
    return cube.astype(np.float32), header


async def queue_samples_if_empty(archive: Archive) -> int:
    """Write and queue the samples when the catalog has no images and no jobs; returns files queued."""
    from app.ingest.scan import job_for

    counts = await archive.store.job_counts()
    if sum(counts.values()) or await archive.store.count_images():
        return 0
    paths = await asyncio.to_thread(write_samples, archive.settings.data / "samples")
    jobs = [job_for(path, owner="", provenance="batch") for path in paths]
    for job in jobs:
        job.options["visibility"] = "public"  # the samples show a new site to every visitor
    await archive.store.enqueue(jobs)
    return len(paths)
