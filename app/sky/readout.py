"""What the browser needs to show sky coordinates under the cursor, computed once per image with astropy.

The description is a grid (`app.sky.grid`) of exact ICRS positions (unit vectors) over the image, one cell
row and column beyond every edge, that `app/static/sky.js` interpolates with Catmull-Rom cubics and
normalises. Unit
vectors have no seam at RA 0/360 and no singularity at the poles, and the grid works for every projection
and distortion astropy understands (TAN, TAN-SIP, ZEA, CAR, TPV ...). The grid is refined until the
interpolation, checked here against astropy at nine points inside every cell, stays within `TOLERANCE_ARCSEC`;
the error reached is part of the description. The same interpolation is written twice (here, to check
it; in sky.js, to use it) and a test runs the browser's file under node against astropy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import lru_cache, partial
from typing import Any

import numpy as np

from app.formats.fits import icrs_equatorial
from app.sky.geographic import geographic_readout
from app.sky.grid import fit_grid, separation_arcsec
from app.sky.wcs import celestial_wcs
from app.store.records import HeaderValue

TOLERANCE_ARCSEC = 0.02
# Keywords that give a physical pixel size in micrometres (microscopy, detectors).
_MICRON_KEYWORDS = (("XPIXSIZE", "YPIXSIZE"), ("PIXSIZE1", "PIXSIZE2"), ("XPIXSZ", "YPIXSZ"),
                    ("PIXSIZE", "PIXSIZE"))


class OffImage(ValueError):
    """A sky position that does not fall on the image."""


def sky_vectors(wcs: Any, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """ICRS unit vectors (n, 3) of 0-based pixel positions; NaN rows where the projection is undefined.
    The WCS's own frame is turned to ICRS by the rotation between them when there is one (ICRS, FK5,
    Galactic, ...: `_to_icrs`), which costs a matrix product instead of astropy's frame machinery per
    call; any other frame (FK4's E-terms) goes through astropy's coordinates."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        rotation = _to_icrs(wcs)
        if rotation is None:
            coords = wcs.pixel_to_world(xs.ravel(), ys.ravel()).icrs
            return _unit(np.asarray(coords.ra.rad, dtype=float), np.asarray(coords.dec.rad, dtype=float))
        world = wcs.all_pix2world(np.asarray(xs, dtype=float).ravel(), np.asarray(ys, dtype=float).ravel(), 0)
        vectors = _unit(np.radians(world[wcs.wcs.lng]), np.radians(world[wcs.wcs.lat]))
    return vectors if rotation is _IDENTITY else vectors @ rotation.T


def _unit(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


_IDENTITY = np.eye(3)
_ROTATIONS: dict[str, np.ndarray | None] = {}
ROTATION_CHECK_RAD = 1e-11  # 2 micro-arcseconds: a frame whose change to ICRS is a rotation to this


def _to_icrs(wcs: Any) -> np.ndarray | None:
    """The rotation taking unit vectors in a two-axis celestial WCS's frame to ICRS (the same matrix
    for every WCS of that frame, kept by the frame's description), `_IDENTITY` for ICRS itself, or None
    when the change is not a rotation (FK4, whose E-terms depend on the position) or the frame is not
    one astropy knows."""
    from astropy.wcs.utils import wcs_to_celestial_frame

    if wcs.naxis != 2 or wcs.wcs.lng < 0 or wcs.wcs.lat < 0:
        return None
    if icrs_equatorial(wcs):
        return _IDENTITY  # what astropy finds the frame to be, without the cost of asking it each time
    try:
        frame = wcs_to_celestial_frame(wcs)
    except ValueError:
        return None
    key = repr(frame)
    if key not in _ROTATIONS:
        _ROTATIONS[key] = _rotation_of(frame)
    return _ROTATIONS[key]


def _rotation_of(frame: Any) -> np.ndarray | None:
    import astropy.units as u
    from astropy.coordinates import ICRS, SkyCoord

    if type(frame) is ICRS:
        return _IDENTITY
    # the frame's x, y and z axes in ICRS are the matrix's columns; checked on positions all over the sky
    basis = SkyCoord([0.0, 90.0, 0.0] * u.deg, [0.0, 0.0, 90.0] * u.deg, frame=frame).icrs.cartesian
    rotation = np.stack([basis.x.value, basis.y.value, basis.z.value], axis=0)
    lon, lat = np.meshgrid(np.arange(7.0, 360.0, 31.0), np.arange(-83.0, 90.0, 19.0))
    checks = SkyCoord(lon.ravel() * u.deg, lat.ravel() * u.deg, frame=frame)
    icrs = checks.icrs
    wanted = _unit(np.asarray(icrs.ra.rad), np.asarray(icrs.dec.rad))
    spherical = checks.spherical
    turned = _unit(np.asarray(spherical.lon.rad), np.asarray(spherical.lat.rad)) @ rotation.T
    if not np.all(np.abs(turned - wanted) < ROTATION_CHECK_RAD):
        return None
    return rotation


def galactic_matrix() -> list[list[float]]:
    """The rotation taking ICRS unit vectors to Galactic ones, as astropy transforms them."""
    return [list(row) for row in _galactic_rows()]


@lru_cache(maxsize=1)
def _galactic_rows() -> tuple[tuple[float, ...], ...]:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    # the ICRS x, y and z axes as positions; their Galactic vectors are the matrix's columns
    basis = SkyCoord(ra=[0.0, 90.0, 0.0] * u.deg, dec=[0.0, 0.0, 90.0] * u.deg, frame="icrs")
    galactic = basis.galactic.cartesian
    columns = np.stack([galactic.x.value, galactic.y.value, galactic.z.value], axis=0)  # rows: x, y, z
    return tuple(tuple(float(value) for value in row) for row in columns)


def physical_scale(header: Mapping[str, HeaderValue]) -> dict[str, Any] | None:
    """The pixel size in metres (x, y) from, in this order: CDELTn with a length CUNITn (FITS); the OME
    attributes PhysicalSizeX/Y with PhysicalSizeXUnit/YUnit (OME-TIFF; the readers of other microscopy
    formats, Gatan DM and ImageJ TIFF, record their calibration under the same names); DICOM's PixelSpacing
    or ImagerPixelSpacing (row spacing, then column spacing, in mm); a pixel-size keyword in micrometres
    (XPIXSIZE, PIXSIZE1, XPIXSZ, PIXSIZE). None when the header gives none."""
    import astropy.units as u

    def positive(value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = abs(float(value))
        return number if math.isfinite(number) and 0 < number < 1e6 else None

    def length(unit_text: object) -> float | None:
        if not isinstance(unit_text, str) or not unit_text.strip() or len(unit_text) > 20:
            return None
        try:
            unit = u.Unit(unit_text.strip().replace("µ", "u").replace("Å", "Angstrom"))
            return float(unit.to(u.m)) if unit.physical_type == "length" else None
        except (ValueError, TypeError, u.UnitsError):
            return None

    def pair(key_x: str, unit_key_x: str, key_y: str, unit_key_y: str, default_unit: str | None = None
             ) -> tuple[float, float] | None:
        unit_x = length(header.get(unit_key_x, default_unit))
        delta_x = positive(header.get(key_x))
        if unit_x is None or delta_x is None:
            return None
        unit_y, delta_y = length(header.get(unit_key_y, default_unit)), positive(header.get(key_y))
        return delta_x * unit_x, (delta_y * unit_y if unit_y is not None and delta_y is not None
                                  else delta_x * unit_x)

    found = pair("CDELT1", "CUNIT1", "CDELT2", "CUNIT2")
    if found:
        return {"x": found[0], "y": found[1], "source": "CDELT1/CUNIT1"}
    # OME's default unit is the micrometre
    found = pair("PhysicalSizeX", "PhysicalSizeXUnit", "PhysicalSizeY", "PhysicalSizeYUnit", "um")
    if found:
        return {"x": found[0], "y": found[1], "source": "PhysicalSizeX/PhysicalSizeY"}
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = header.get(keyword)
        parts = spacing.replace(",", "\\").split("\\") if isinstance(spacing, str) else []
        sizes = [positive(_number(part)) for part in parts]
        if len(sizes) == 2 and sizes[0] is not None and sizes[1] is not None:
            # DICOM gives the spacing between rows (a pixel's height) first
            return {"x": sizes[1] * 1e-3, "y": sizes[0] * 1e-3, "source": keyword}
    for key_x, key_y in _MICRON_KEYWORDS:
        size = positive(header.get(key_x))
        if size is not None:
            other = positive(header.get(key_y))
            return {"x": size * 1e-6, "y": (other if other is not None else size) * 1e-6,
                    "source": key_x if key_x == key_y else f"{key_x}/{key_y}"}
    return None


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def sky_readout(header: Mapping[str, HeaderValue], width: int, height: int,
             tolerance: float = TOLERANCE_ARCSEC) -> dict[str, Any]:
    """Everything the viewer's readout needs (JSON-ready): `celestial` (the grid, or None), `geographic`
    (longitude and latitude of a map, `app.sky.geographic`, or None) and `physical` (a pixel size in
    metres, or None). Runs in the process pool: a few astropy or pyproj calls on arrays."""
    wcs = celestial_wcs(header)
    celestial: dict[str, Any] | None = None
    if wcs is not None and width > 0 and height > 0:
        fit = fit_grid(partial(sky_vectors, wcs), width, height, tolerance)
        if np.isfinite(fit.grid.nodes).any():
            flat = np.round(fit.grid.nodes, 12).reshape(-1)
            celestial = {
                "width": width, "height": height, "nx": fit.grid.nx, "ny": fit.grid.ny,
                "nodes": [None if not math.isfinite(value) else float(value) for value in flat],
                "max_error_arcsec": fit.error,
                "rough": fit.rough_cells(),
                "rough_error_arcsec": fit.rough_error,
                "galactic": galactic_matrix(),
                "ctype": [str(c) for c in wcs.wcs.ctype],
            }
    return {"celestial": celestial, "geographic": geographic_readout(header, width, height),
            "physical": physical_scale(header)}


def position_at(header: Mapping[str, HeaderValue], width: int, height: int, x: float,
                y: float) -> dict[str, float] | None:
    """The exact ICRS and Galactic position (degrees) of 0-based pixel (x, y) by astropy, for the readout
    where its grid is rough; None where the projection puts no sky. ValueError when the image has no
    celestial WCS, `OffImage` when the pixel is not on the image."""
    wcs = celestial_wcs(header)
    if wcs is None:
        raise ValueError("this image has no celestial WCS, so its pixels have no sky positions")
    if not (math.isfinite(x) and math.isfinite(y) and -0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
        raise OffImage(f"FITS pixel x {x + 1:g}, y {y + 1:g} is off this image, which spans x 1 to {width}, "
                       f"y 1 to {height}")
    vector = sky_vectors(wcs, np.array([x]), np.array([y]))[0]
    if not np.all(np.isfinite(vector)):
        return None
    galactic = np.array(galactic_matrix()) @ vector
    ra, dec = _angles(vector)
    lon, lat = _angles(galactic)
    return {"ra": ra, "dec": dec, "l": lon, "b": lat}


def _angles(vector: np.ndarray) -> tuple[float, float]:
    """Longitude in [0, 360) and latitude, in degrees, of a unit vector."""
    lon = math.degrees(math.atan2(float(vector[1]), float(vector[0]))) % 360.0
    lat = math.degrees(math.atan2(float(vector[2]), math.hypot(float(vector[0]), float(vector[1]))))
    return lon, lat


def locate(header: Mapping[str, HeaderValue], width: int, height: int, ra: float,
           dec: float) -> tuple[float, float]:
    """The 0-based pixel (x, y) of an ICRS position; `OffImage` with a message when it is not on the
    image, ValueError when the image has no celestial WCS."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    wcs = celestial_wcs(header)
    if wcs is None:
        raise ValueError("this image has no celestial WCS, so it has no sky positions to go to")
    target = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    where = f"RA {ra:.6f}°, Dec {dec:+.6f}°"
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        try:
            x, y = (float(value) for value in wcs.world_to_pixel(target))
        except Exception:
            x = y = math.nan
        # a projection can map a point of the far side of the sky onto the plane: only a position that
        # comes back to itself is on the image
        back = sky_vectors(wcs, np.array([x]), np.array([y])) if math.isfinite(x + y) else None
    wanted = sky_vectors_of(ra, dec)
    # a point of the far side comes back degrees away; an approximate inverse (CSC's, off by up to 40" where
    # astropy's pixel is within 0.2 px) comes back within a fraction of a pixel
    if back is None or not np.all(np.isfinite(back)) \
            or separation_arcsec(back[0], wanted) > max(1.0, 0.5 * _pixel_arcsec(wcs)):
        raise OffImage(f"{where} is off this image: its projection does not reach that part of the sky")
    if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
        raise OffImage(f"{where} is off this image: it would be at FITS pixel x {x + 1:.1f}, "
                       f"y {y + 1:.1f}, and the image spans x 1 to {width}, y 1 to {height}")
    return x, y


def _pixel_arcsec(wcs: Any) -> float:
    """The WCS's pixel size at its reference point, in arcsec (0 when it cannot be had)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        scale = float(np.max(proj_plane_pixel_scales(wcs))) * 3600.0
    except Exception:  # a degenerate matrix: fall back to the strict test
        return 0.0
    return scale if math.isfinite(scale) else 0.0


def sky_vectors_of(ra: float, dec: float) -> np.ndarray:
    """The unit vector of one position in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
