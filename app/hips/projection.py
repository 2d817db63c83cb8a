"""One image's pixels on one HiPS tile: the image's science values (its float32 science pyramid, app/tiles/
science.py) sampled at the tile's HEALPix cell centres through its WCS, with bilinear interpolation in
NumPy, and its display scaling (the one its viewer opens with) applied to them for the PNG and JPEG tiles.

The science pyramid is in display orientation (top row first); the WCS counts rows from the bottom (astropy's
0-based y, the centre of the bottom row at 0): row = height - 1 - y. Only the part of the pyramid under the
tile is read.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.hips import geometry
from app.names import EQUALISED

# Cells whose position falls at most this far (in pixels) outside the image's outer edge still take its edge
# value: the image covers its pixels out to their outer edges, -0.5 .. width - 0.5.
_EDGE = 0.5
BLOCK = 8  # cells a side of the blocks `project_tile` leaves out where the image is not


@dataclass
class Member:
    """A catalogued celestial image as a survey sees it (JSON-ready: it is kept in the survey's index)."""

    id: str
    created: float
    root: str  # the image's tile root (app/tiles/pyramid.py), whose current generation holds science.tif
    original: str
    hdu: int
    width: int
    height: int
    scale_arcsec: float
    header: dict[str, Any]
    display: dict[str, Any]
    tiles: list[int] = field(default_factory=list)  # the tiles of the survey's deepest order it may touch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Member:
        return cls(**values)

    @property
    def rank(self) -> tuple[float, str]:
        """Overlaps are combined in this order, the greatest on top: the most recent image wins."""
        return self.created, self.id


@dataclass
class Scaled:
    """What an image shows in PNG and JPEG tiles: values from `low` to `high` through a stretch's table."""

    low: float
    high: float
    lut: np.ndarray  # 65536 entries of 8-bit grey


def wcs_of(member: Member) -> Any:
    from app.sky.wcs import celestial_wcs

    return celestial_wcs(member.header)


def science_path(member: Member, max_pixels: int) -> str:
    """The image's science pyramid (built from its original when it has none yet)."""
    from app.tiles import pyramid, science

    folder = pyramid.current(Path(member.root))
    if folder is None:
        raise FileNotFoundError(f"image {member.id} has no tiles")
    return science.ensure(str(folder), member.original, member.hdu, max_pixels)


def scaled(member: Member, path: str) -> Scaled:
    """The display scaling the image's viewer opens with (`render.default_spec`), measured and cached as
    its dynamic tiles are."""
    from app.tiles import render
    from app.tiles.scaling import stretch_lut

    spec = render.default_spec(member.display)
    scale = render.scale_of(Path(path).parent, spec, path)
    stretch = "histeq" if spec.stretch in EQUALISED else spec.stretch
    return Scaled(scale.low, scale.high, stretch_lut(stretch, None, scale.curve))


def footprint_tiles(member: Member, order: int) -> list[int]:
    """The tiles of `order` that the image may touch: those of points spread over it (closer than a tile's
    width) and their neighbours, so that a corner of a tile that falls between the points is not missed.
    Tiles it turns out not to reach are left blank by `project`."""
    from astropy_healpix import lonlat_to_healpix, neighbours

    wcs = wcs_of(member)
    if wcs is None:
        return []
    tile_arcsec = geometry.pixel_size_arcsec(order)
    step = max(1.0, min(tile_arcsec / max(member.scale_arcsec, 1e-9) / 4, max(member.width, member.height)))
    xs = np.unique(np.concatenate([np.arange(-0.5, member.width - 0.5, step), [member.width - 0.5]]))
    ys = np.unique(np.concatenate([np.arange(-0.5, member.height - 0.5, step), [member.height - 0.5]]))
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = world_of(wcs, gx.ravel(), gy.ravel())
    good = np.isfinite(lon) & np.isfinite(lat)
    if not good.any():
        return []
    import astropy.units as u

    cells = np.unique(lonlat_to_healpix(lon[good] * u.deg, lat[good] * u.deg, 1 << order, order="nested"))
    with np.errstate(invalid="ignore"):  # a cell at a base cell's corner lacks a neighbour: -1, left out
        around = neighbours(cells, 1 << order, order="nested").ravel()
    found = np.unique(np.concatenate([cells, around[around >= 0]]))
    return [int(cell) for cell in found]


def world_of(wcs: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS degrees of 0-based pixel positions (NaN where the projection has none)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        coords = wcs.pixel_to_world(xs, ys).icrs
        return np.asarray(coords.ra.deg, dtype=float), np.asarray(coords.dec.deg, dtype=float)


def _pixels(wcs: Any, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions (astropy's: y up) of ICRS degrees; NaN where the projection has none."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        x, y = wcs.world_to_pixel(SkyCoord(lon * u.deg, lat * u.deg, frame="icrs"))
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def reach(member: Member) -> tuple[np.ndarray, float] | None:
    """The unit vector of the image's centre and the angle (degrees) within which all of it lies, or None
    when it has no celestial WCS."""
    wcs = wcs_of(member)
    if wcs is None:
        return None
    w, h = member.width, member.height
    xs = np.array([(w - 1) / 2, -0.5, w - 0.5, w - 0.5, -0.5, (w - 1) / 2, w - 0.5, (w - 1) / 2, -0.5])
    ys = np.array([(h - 1) / 2, -0.5, -0.5, h - 0.5, h - 0.5, -0.5, (h - 1) / 2, h - 0.5, (h - 1) / 2])
    lon, lat = world_of(wcs, xs, ys)
    if not (np.isfinite(lon[0]) and np.isfinite(lat[0])):
        return None
    vectors = _vectors(lon, lat)
    good = np.all(np.isfinite(vectors), axis=1)
    if not good.all():  # part of the image is off the sky (an all-sky map's corners): no bound
        return vectors[0], 180.0
    angles = np.degrees(np.arccos(np.clip(vectors[1:] @ vectors[0], -1, 1)))
    return vectors[0], float(min(180.0, angles.max() * 1.2 + member.scale_arcsec / 3600))


def _vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    a, b = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(b) * np.cos(a), np.cos(b) * np.sin(a), np.sin(b)], axis=-1)


@dataclass
class Positions:
    """Sky positions to project onto: ICRS degrees (any shape) and their unit vectors (n, 3)."""

    lon: np.ndarray
    lat: np.ndarray
    vectors: np.ndarray

    @classmethod
    def of(cls, lon: np.ndarray, lat: np.ndarray) -> Positions:
        return cls(lon, lat, _vectors(lon.ravel(), lat.ravel()))


class Placed:
    """An image's WCS and `reach`, worked out once."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.wcs = wcs_of(member)
        self.bound = reach(member) if self.wcs is not None else None


def project(placed: Placed, path: str, positions: Positions) -> np.ndarray:
    """The image's values at these positions (their shape), NaN where it has none: bilinear between the
    four nearest pixel centres (those that are finite, their weights renormalised). Only positions within
    the image's `reach` are projected: a projection such as TAN also maps the far side of the sky onto the
    image's plane."""
    import pyvips

    member, wcs, bound = placed.member, placed.wcs, placed.bound
    lon, lat = positions.lon, positions.lat
    out = np.full(lon.shape, np.nan, dtype=np.float32)
    if wcs is None or bound is None:
        return out
    centre, radius = bound
    near = positions.vectors @ centre >= math.cos(math.radians(radius))
    if not near.any():
        return out
    x = np.full(near.shape, np.nan)
    y = np.full(near.shape, np.nan)
    x[near], y[near] = _pixels(wcs, lon.ravel()[near], lat.ravel()[near])
    row = member.height - 1 - y  # display orientation, top row first
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(x) & np.isfinite(row) & (x >= -_EDGE) & (x <= member.width - 1 + _EDGE) \
            & (row >= -_EDGE) & (row <= member.height - 1 + _EDGE)
    if not inside.any():
        return out
    xi, ri = np.clip(x[inside], 0, member.width - 1), np.clip(row[inside], 0, member.height - 1)
    left, top = math.floor(xi.min()), math.floor(ri.min())
    right = min(member.width - 1, math.floor(xi.max()) + 1)
    bottom = min(member.height - 1, math.floor(ri.max()) + 1)
    picture = pyvips.Image.new_from_file(path, access="random")  # page 0: full resolution
    region = picture.crop(left, top, right - left + 1, bottom - top + 1)
    block = np.frombuffer(region.write_to_memory(), dtype=np.float32).reshape(region.height, region.width)
    values = _bilinear(block, xi - left, ri - top)
    flat = out.reshape(-1)
    flat[inside] = values
    return out


def project_tile(placed: Placed, path: str, order: int, npix: int) -> np.ndarray:
    """The image's values over one tile of that order (WIDTH x WIDTH, PNG orientation), NaN where it has none:
    `project` at the tile's cell centres, placing only the blocks of BLOCK x BLOCK cells whose centre lands
    on the image or near it (within twice the block's size), or where the image's projection gives the
    centre no pixel. A tile on the edge of a small image costs in proportion to the part of it the image
    covers."""
    width, blocks = geometry.WIDTH, geometry.WIDTH // BLOCK
    out = np.full((width, width), np.nan, dtype=np.float32)
    member, wcs, bound = placed.member, placed.wcs, placed.bound
    if wcs is None or bound is None:
        return out
    side = geometry.pixel_size_arcsec(order + geometry.TILE_ORDER) * BLOCK  # a block's side on the sky
    centre, radius = bound
    lon, lat = geometry.tile_lonlat(order, npix, blocks)
    reach_cos = math.cos(math.radians(min(180.0, radius + side / 3600)))
    near = _vectors(lon.ravel(), lat.ravel()) @ centre >= reach_cos
    if not near.any():
        return out
    x, y = np.full(near.shape, np.nan), np.full(near.shape, np.nan)
    x[near], y[near] = _pixels(wcs, lon.ravel()[near], lat.ravel()[near])
    margin = 2 * side / max(member.scale_arcsec, 1e-9) + 2
    with np.errstate(invalid="ignore"):
        onto = (x >= -margin) & (x <= member.width - 1 + margin) \
            & (y >= -margin) & (y <= member.height - 1 + margin)
    keep = near & (onto | ~(np.isfinite(x) & np.isfinite(y)))
    if not keep.any():
        return out
    where = np.repeat(np.repeat(keep.reshape(blocks, blocks), BLOCK, axis=0), BLOCK, axis=1)
    out[where] = project(placed, path, Positions.of(*geometry.tile_lonlat(order, npix, where=where)))
    return out


def _bilinear(block: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`block` (rows top first) at fractional (x, y) inside it, by the finite ones of the four neighbours."""
    height, width = block.shape
    x0 = np.clip(np.floor(x).astype(np.int64), 0, width - 1)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, height - 1)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    total = np.zeros(x.shape, dtype=np.float64)
    weight = np.zeros(x.shape, dtype=np.float64)
    for ys, xs, w in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x1, fx * (1 - fy)), (y1, x0, (1 - fx) * fy),
                      (y1, x1, fx * fy)):
        value = block[ys, xs].astype(np.float64)
        good = np.isfinite(value) & (w > 0)
        total += np.where(good, value * w, 0.0)
        weight += np.where(good, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(weight > 1e-9, total / weight, np.nan)
    return result.astype(np.float32)


def grey(values: np.ndarray, scale: Scaled) -> np.ndarray:
    """8-bit grey levels of values through the image's display scaling (0 where a value is not finite)."""
    size = scale.lut.size
    factor = (size - 1) / (scale.high - scale.low) if scale.high != scale.low else 0.0
    with np.errstate(invalid="ignore"):
        index = np.clip((values.astype(np.float64) - scale.low) * factor, 0, size - 1)
    index = np.where(np.isfinite(index), index, 0).astype(np.int64)
    levels: np.ndarray = scale.lut[index]
    return levels
