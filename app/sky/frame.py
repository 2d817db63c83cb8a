"""A mosaic's own frame: a gnomonic (TAN) projection centred on the images' combined footprint, north up and
east left, at the finest pixel scale among them. The placements (`app.sky.mosaic`) are computed into it as
into any reference WCS, and the readout, scale bar, compass and go-to use its header as they use an image's.

One tangent plane holds only part of the sky: far from its centre a TAN projection stretches without bound
(1/cos² of the angle) and past 90 degrees it has no points at all. Images spread wider than `MAX_RADIUS_DEG`
from the footprint's centre, or a frame wider than `MAX_SIDE` pixels, are refused with the images named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.sky.mosaic import GRID, Sheet, display_to_fits, sheet_wcs
from app.sky.readout import sky_vectors

# Farthest a footprint point may lie from the frame's centre (TAN stretches scales by 1/cos²: 1.7 at 40°).
MAX_RADIUS_DEG = 40.0
# Widest frame, in pixels of the finest image, that a viewer can still zoom through sensibly.
MAX_SIDE = 4_000_000


class TooFarApart(ValueError):
    """Images whose footprints no one tangent plane holds; `indices` are those of the sheets concerned."""

    def __init__(self, message: str, indices: list[int]) -> None:
        super().__init__(message)
        self.indices = indices

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the pool's processes whole
        return (TooFarApart, (str(self), self.indices))


@dataclass(frozen=True)
class Frame:
    """The frame's header (a FITS TAN WCS, ICRS) and size in display pixels."""

    header: dict[str, Any]
    width: int
    height: int

    def sheet(self) -> Sheet:
        keys = ",".join(f"{name}={self.header[name]!r}" for name in sorted(self.header))
        return Sheet(self.header, self.width, self.height, key=f"frame:{keys}")


def _outline(sheet: Sheet, wcs: Any) -> np.ndarray:
    """ICRS unit vectors of the image's edges and centre (GRID points along each edge)."""
    steps = np.linspace(0.0, 1.0, GRID)
    w, h = float(sheet.width), float(sheet.height)
    us = np.concatenate([steps * w, steps * w, np.zeros(GRID), np.full(GRID, w), [w / 2]])
    vs = np.concatenate([np.zeros(GRID), np.full(GRID, h), steps * h, steps * h, [h / 2]])
    x, y = display_to_fits(sheet.height, us, vs)
    vectors = sky_vectors(wcs, np.asarray(x), np.asarray(y))
    return vectors[np.all(np.isfinite(vectors), axis=1)]


def _pixel_degrees(wcs: Any) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        scale = float(np.min(proj_plane_pixel_scales(wcs)))
    except Exception:
        return math.inf
    return scale if math.isfinite(scale) and scale > 0 else math.inf


def north_up(sheets: Sequence[Sheet], names: Sequence[str]) -> Frame | None:
    """The north-up TAN frame holding every sheet with a celestial WCS (None when none has one);
    TooFarApart naming (`names`, one per sheet) the images that one tangent plane cannot hold together."""
    outlines: list[tuple[int, np.ndarray]] = []
    scale = math.inf
    for index, sheet in enumerate(sheets):
        wcs = sheet_wcs(sheet)
        if wcs is None:
            continue
        outline = _outline(sheet, wcs)
        if len(outline):
            outlines.append((index, outline))
            scale = min(scale, _pixel_degrees(wcs))
    if not outlines or not math.isfinite(scale):
        return None
    points = np.concatenate([outline for _, outline in outlines])
    centre = np.concatenate([outline[-1:] for _, outline in outlines]).sum(axis=0)
    length = float(np.linalg.norm(centre))
    if length < 1e-9:  # images spread evenly round the sky: there is no middle to centre on
        raise TooFarApart(_spread_message(names, outlines), [index for index, _ in outlines])
    centre /= length
    cosines = points @ centre
    if float(np.min(cosines)) < math.cos(math.radians(MAX_RADIUS_DEG)):
        raise TooFarApart(_spread_message(names, outlines), [index for index, _ in outlines])
    ra = math.degrees(math.atan2(centre[1], centre[0])) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, float(centre[2])))))
    # gnomonic offsets (degrees, east to the left: x grows westward) of every footprint point
    east = np.array([-math.sin(math.radians(ra)), math.cos(math.radians(ra)), 0.0])
    north = np.cross(centre, east)
    xi = np.degrees((points @ east) / cosines)
    eta = np.degrees((points @ north) / cosines)
    left, right = float(np.max(xi)), float(np.min(xi))
    bottom, top = float(np.min(eta)), float(np.max(eta))
    width = max(1, math.ceil((left - right) / scale))
    height = max(1, math.ceil((top - bottom) / scale))
    if max(width, height) > MAX_SIDE:
        indices = [index for index, _ in outlines]
        raise TooFarApart(f"{_listed(names, indices)} are too far apart at their pixel scale to show "
                          f"together: one frame would be {width:,} x {height:,} pixels", indices)
    # FITS pixel 1 (centre) half a pixel in from the edges; the centre of the footprint's box in the middle
    header = {
        "NAXIS": 2, "NAXIS1": width, "NAXIS2": height, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg", "CUNIT2": "deg", "RADESYS": "ICRS", "CRVAL1": ra, "CRVAL2": dec,
        "CDELT1": -scale, "CDELT2": scale,
        "CRPIX1": 0.5 + (width * scale - (left - right)) / 2 / scale + left / scale,
        "CRPIX2": 0.5 + (height * scale - (top - bottom)) / 2 / scale - bottom / scale,
    }
    return Frame(header, width, height)


def _listed(names: Sequence[str], indices: Sequence[int]) -> str:
    shown = [names[index] for index in indices]
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]


def _spread_message(names: Sequence[str], outlines: list[tuple[int, np.ndarray]]) -> str:
    """Which images cannot be shown together, and how far apart the farthest two are."""
    centres = np.array([outline[-1] for _, outline in outlines])
    cosines = np.clip(centres @ centres.T, -1.0, 1.0)
    degrees = math.degrees(math.acos(float(np.min(cosines))))
    return (f"{_listed(names, [index for index, _ in outlines])} are too far apart on the sky to show "
            f"together (up to {degrees:.0f}° between their centres; one north-up frame holds images within "
            f"about {2 * MAX_RADIUS_DEG:.0f}°): choose a reference image to show those near it")
