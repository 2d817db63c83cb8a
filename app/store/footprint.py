"""Image footprints on the sky: the HEALPix cells that index them and the exact cone tests.

An image's footprint is its coverage (app/sky/coverage.py): a MOC of the cells its pixels touch, computed
through its WCS at ingest, and the WCS cards that let a cone be tested against the pixels themselves. A
record made before coverages (and not yet given one: `Store._bring_up_to_date`) keeps the old footprint:
the spherical quadrilateral whose vertices are the four outer pixel corners (ICRS degrees, as
`formats.fits._sky` records them) joined by great-circle arcs, exact for TAN fields of ordinary size.

The index uses one fixed HEALPix order. At nside 128 (order 7, nested) a cell is about 27.5 arcmin across:
a typical image, arcminutes to a degree or two wide, falls in 1 to about 50 cells, and a typical query cone
(arcseconds to tens of arcminutes) in a handful, so the candidate set stays small and each image adds few
index rows. Nested numbering keeps a cone's cells in few contiguous runs, which the store queries as ranges.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

ConeMode = Literal["overlaps", "contains"]
CONE_MODES: tuple[ConeMode, ...] = ("overlaps", "contains")
HEALPIX_ORDER = 7
# the footprints' rules; MongoDB documents under older ones get their coverage and cells again (0: corners)
CELLS_VERSION = 1
# a cone of zero radius still needs the cell that holds its centre
_MIN_SEARCH_DEG = 1e-6
# how many runs of cells a query may list before it is searched at a coarser order
MAX_RANGES = 48

Vector = tuple[float, float, float]


def unit_vector(ra: float, dec: float) -> Vector:
    """The point (degrees) on the unit sphere."""
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def _dot(a: Vector, b: Vector) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vector, b: Vector) -> Vector:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _normalised(a: Vector) -> Vector | None:
    norm = math.sqrt(_dot(a, a))
    if norm < 1e-15:
        return None
    return (a[0] / norm, a[1] / norm, a[2] / norm)


def separation(a: Vector, b: Vector) -> float:
    """Great-circle distance in degrees (atan2 form: accurate for tiny and near-antipodal angles)."""
    return math.degrees(math.atan2(math.sqrt(_dot(c := _cross(a, b), c)), _dot(a, b)))


def _corners(sky: dict[str, Any] | None) -> list[Vector] | None:
    corners = (sky or {}).get("corners")
    if not isinstance(corners, list) or len(corners) != 4:
        return None
    return [unit_vector(float(ra), float(dec)) for ra, dec in corners]


def contains(corners: Sequence[Vector], point: Vector) -> bool:
    """Whether `point` lies in the convex spherical polygon (edges included), whichever way it winds."""
    count = len(corners)
    normals = [_cross(a, corners[(i + 1) % count]) for i, a in enumerate(corners)]
    middle = (sum(c[0] for c in corners), sum(c[1] for c in corners), sum(c[2] for c in corners))
    # the winding is the sign the polygon's own middle gets; the antipodal region gets the opposite one
    winding = 1.0 if sum(_dot(normal, middle) for normal in normals) >= 0 else -1.0
    if all(_dot(normal, normal) < 1e-30 for normal in normals):  # a degenerate footprint: a point
        return separation(corners[0], point) < 1e-9
    return all(winding * _dot(normal, point) >= -1e-12 for normal in normals)


def arc_distance(point: Vector, a: Vector, b: Vector) -> float:
    """Degrees from `point` to the nearest point of the shorter great-circle arc from `a` to `b`."""
    pole = _normalised(_cross(a, b))
    if pole is not None:
        height = _dot(point, pole)
        foot = _normalised((point[0] - height * pole[0], point[1] - height * pole[1],
                            point[2] - height * pole[2]))
        # the foot of the perpendicular lies on the arc when it is between a and b going round `pole`
        if foot is not None and _dot(_cross(a, foot), pole) >= 0 and _dot(_cross(foot, b), pole) >= 0:
            return math.degrees(math.asin(min(1.0, abs(height))))
    return min(separation(point, a), separation(point, b))


def cone_matches(corners: Sequence[Vector], ra: float, dec: float, radius: float, mode: ConeMode) -> bool:
    """The exact test: `contains` when the footprint holds (ra, dec); `overlaps` when the footprint and the
    cone of `radius` degrees around (ra, dec) share at least one point."""
    centre = unit_vector(ra, dec)
    if contains(corners, centre):
        return True
    if mode == "contains":
        return False
    count = len(corners)
    return any(arc_distance(centre, corners[i], corners[(i + 1) % count]) <= radius for i in range(count))


class Coverage(Protocol):
    """What the store needs of an image's coverage (a MOC and its pixels through the WCS), computed above it
    in `app.sky.coverage`, which hands itself over with `use_coverage` when imported: the store sits below
    the sky and never imports it."""

    def coverage_matches(self, sky: Mapping[str, Any], ra: float, dec: float, radius: float,
                         mode: str) -> bool: ...

    def with_coverage(self, sky: dict[str, Any] | None, header: Mapping[str, Any], width: int,
                      height: int) -> dict[str, Any] | None: ...

    def coverage_cells(self, sky: Mapping[str, Any], order: int) -> list[int]: ...


_coverage: list[Coverage] = []
_coverage_module: list[str] = []


def use_coverage(functions: Coverage) -> None:
    """Hand the store the coverage functions (`app.sky.coverage` does, when imported)."""
    _coverage[:] = [functions]


def coverage_from(module: str) -> None:
    """Name the module that hands the store its coverage functions when imported (`app.archive` names
    `app.sky.coverage`): it is imported when a footprint first needs it, not when the process starts."""
    _coverage_module[:] = [module]


def _functions() -> Coverage:
    if not _coverage and _coverage_module:
        importlib.import_module(_coverage_module[0])
    if not _coverage:
        raise RuntimeError("the sky coverage functions are not loaded: import app.sky.coverage before the "
                           "catalog searches or backfills footprints (app.archive does)")
    return _coverage[0]


def has_coverage(sky: Mapping[str, Any] | None) -> bool:
    """Whether a `sky` record holds a coverage (records made before coverages hold corners alone)."""
    if not sky:
        return False
    return (isinstance(sky.get("moc"), str) and isinstance(sky.get("wcs"), dict)
            and isinstance(sky.get("size"), list))


def sky_matches(sky: dict[str, Any] | None, ra: float, dec: float, radius: float, mode: ConeMode) -> bool:
    """The exact cone test for an image's `sky` record: against its pixels when it holds a coverage, else
    `cone_matches` on its corners; an image without one never matches."""
    if sky is not None and has_coverage(sky):
        return _functions().coverage_matches(sky, ra, dec, radius, mode)
    corners = _corners(sky)
    return corners is not None and cone_matches(corners, ra, dec, radius, mode)


def covered(sky: dict[str, Any] | None, header: dict[str, Any], width: int,
            height: int) -> dict[str, Any] | None:
    """A stored image's `sky` record with its coverage, computed from its stored header cards when it has
    none yet (`app.sky.coverage.with_coverage`)."""
    if sky is not None and has_coverage(sky):
        return sky
    return _functions().with_coverage(sky, header, width, height)


def sky_matches_json(sky: str | None, ra: float, dec: float, radius: float, mode: str) -> int:
    """`sky_matches` over the stored JSON text, as a SQL function (1 or 0)."""
    if sky is None or mode not in CONE_MODES:
        return 0
    mode_: ConeMode = "contains" if mode == "contains" else "overlaps"
    return int(sky_matches(json.loads(sky), ra, dec, radius, mode_))


def _cells(ra: float, dec: float, radius: float, order: int = HEALPIX_ORDER) -> list[int]:
    import astropy.units as u
    from astropy_healpix import HEALPix

    if radius >= 180:
        return list(range(12 * 4 ** order))
    grid = HEALPix(nside=2 ** order, order="nested")
    found = grid.cone_search_lonlat(ra * u.deg, dec * u.deg, max(radius, _MIN_SEARCH_DEG) * u.deg)
    return sorted(int(cell) for cell in np.unique(found))


def _order_for(radius: float, most_cells: int) -> int:
    """The finest order at which a cap of `radius` degrees covers about `most_cells` cells at most:
    HEALPix cone searches over many thousands of cells are slow."""
    cap = 2 * math.pi * (1 - math.cos(math.radians(min(radius, 180.0))))
    order = HEALPIX_ORDER
    while order > 0 and cap / (4 * math.pi / (12 * 4 ** order)) > most_cells:
        order -= 1
    return order


def footprint_cells(sky: dict[str, Any] | None) -> list[int]:
    """Every cell that shares a point with the footprint (a superset: the cells of the smallest cap around
    the corners that we find cheaply, or its coverage's cells), or none for an image without a sky
    position."""
    if sky is not None and has_coverage(sky):
        return _functions().coverage_cells(sky, HEALPIX_ORDER)
    corners = _corners(sky)
    if corners is None:
        return []
    middle = _normalised((sum(c[0] for c in corners), sum(c[1] for c in corners),
                          sum(c[2] for c in corners)))
    if middle is None:
        return _cells(0.0, 0.0, 180.0)
    radius = max(separation(middle, corner) for corner in corners)
    if radius >= 90:  # a cap this wide is no longer convex enough to hold the edges: take every cell
        return _cells(0.0, 0.0, 180.0)
    ra = math.degrees(math.atan2(middle[1], middle[0])) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, middle[2]))))
    # a very wide field is searched at a coarser order; each coarse cell is a run of index cells
    order = _order_for(radius, 2048)
    shift = 4 ** (HEALPIX_ORDER - order)
    return [fine for cell in _cells(ra, dec, radius, order)
            for fine in range(cell * shift, (cell + 1) * shift)]


def cone_ranges(ra: float, dec: float, radius: float, mode: ConeMode,
                most: int = MAX_RANGES) -> list[tuple[int, int]]:
    """The cells a matching image must have one of (those of the cone, or of its centre for `contains`), as
    at most `most` inclusive runs of cell numbers. A wide cone is searched at a coarser
    order: in the nested scheme a coarse cell is exactly a run of fine cells, so the runs stay a superset."""
    radius = 0.0 if mode == "contains" else radius
    for order in range(_order_for(radius, 256), -1, -1):
        shift = 4 ** (HEALPIX_ORDER - order)
        ranges = cell_ranges(_cells(ra, dec, radius, order))
        if len(ranges) <= most or order == 0:
            return [(low * shift, (high + 1) * shift - 1) for low, high in ranges]
    raise AssertionError("unreachable")


def cell_ranges(cells: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted cells as inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for cell in sorted(cells):
        if runs and cell == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], cell)
        else:
            runs.append((cell, cell))
    return runs
