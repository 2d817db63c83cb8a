"""An image's real sky coverage: a MOC of HEALPix cells computed from its pixels through its WCS, and the
exact cone test against those pixels.

The MOC (`coverage`) samples the pixel grid, edges included (the outer pixel edges at -0.5 and n - 0.5),
densely enough that neighbouring samples lie within a quarter of a cell of each other on the sky; samples
where the projection is undefined (NaN: outside an AIT or MOL ellipse, beyond a SIN horizon) are left out.
The cells holding a sample, grown by one ring of neighbours, cover every point of every pixel: a superset.
Its order follows the pixel scale (cells at least two pixels across) and the image's size (the border a
few hundred cells long), so a record stays a few kilobytes whatever the image.

The cone test (`PixelFootprint.matches`) is exact to within a pixel: the cone's centre taken to pixels
(astropy's `world_to_pixel`, accepted when it lands on the image and goes back to within a pixel), else the
distance from the centre to the pixels on the region's border (the image's edge rows and columns, and the
pixels next to undefined ones), each allowed half its largest distance to a neighbouring pixel centre.
"""

from __future__ import annotations

import atexit
import json
import math
import sys
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from app.formats.fits_header import COMMENTARY
from app.sky.readout import sky_vectors
from app.sky.wcs import celestial_wcs
from app.store import footprint
from app.store.footprint import has_coverage as has_coverage  # where callers have found it
from app.store.records import HeaderValue

# the deepest order a footprint is recorded at (order 16: cells of 3.2 arcsec)
MAX_ORDER = 16
# the border of an image's MOC at most this many cells long at its order, before the ring of neighbours
MOST_BORDER_CELLS = 400
# a recorded MOC is at most this many characters (ASCII serialisation); coarser orders until it fits
MOST_MOC_TEXT = 8000
# at most this many samples of the pixel grid
MOST_SAMPLES = 2_000_000
# the undefined-pixel border is found over the full pixel grid, in chunks of this many pixels
_CHUNK = 1_000_000
# an image whose outline lies within this many degrees of its middle (and has a sky position all round)
# is covered by the polygon of its outline, not a grid of samples
OUTLINE_RADIUS = 30.0
# how many times a stretched square of samples is sampled again, 4 x 4 finer each time
_REFINEMENTS = 4
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def cell_degrees(order: int) -> float:
    """The side of a HEALPix cell of `order` (the square root of its area), degrees."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4 ** order)))


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between unit vectors (rows), NaN where either is undefined."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    angle: np.ndarray = np.degrees(np.arctan2(cross, np.sum(a * b, axis=-1)))
    return angle


def _squares(wcs: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky vectors of grids (squares, rows, columns, 3) of pixel positions `xs`, `ys` (squares, columns) and
    (squares, rows), and the largest side of each grid's every small square (squares, rows - 1, columns - 1),
    degrees (0 where the projection is undefined)."""
    gx = np.broadcast_to(xs[:, None, :], (len(xs), ys.shape[1], xs.shape[1]))
    gy = np.broadcast_to(ys[:, :, None], gx.shape)
    vectors = sky_vectors(wcs, gx.ravel(), gy.ravel()).reshape(*gx.shape, 3)
    across = np.nan_to_num(_angle(vectors[:, :, 1:], vectors[:, :, :-1]))
    down = np.nan_to_num(_angle(vectors[:, 1:], vectors[:, :-1]))
    sides = np.maximum(np.maximum(across[:, 1:], across[:, :-1]), np.maximum(down[:, :, 1:], down[:, :, :-1]))
    return vectors, sides


def _samples(wcs: Any, width: int, height: int, step: float, limit: float) -> tuple[np.ndarray, float]:
    """Sky vectors (n, 3) of the pixel grid, outer pixel edges included, at most `step` px apart, each small
    square whose side exceeds `limit` degrees sampled again 4 x 4 finer (a few times over); and the largest
    side left."""
    xs = np.linspace(-0.5, width - 0.5, max(2, math.ceil(width / step) + 1))
    ys = np.linspace(-0.5, height - 0.5, max(2, math.ceil(height / step) + 1))
    vectors, sides = _squares(wcs, xs[None, :], ys[None, :])
    found = [vectors.reshape(-1, 3)]
    lefts, tops = (grid[None] for grid in np.meshgrid(xs[:-1], ys[:-1]))
    rights, bottoms = (grid[None] for grid in np.meshgrid(xs[1:], ys[1:]))
    for _ in range(_REFINEMENTS):
        wide = sides > limit
        if not wide.any() or sum(len(f) for f in found) > MOST_SAMPLES:
            break
        fractions = np.linspace(0.0, 1.0, 5)
        lefts, tops, rights, bottoms = lefts[wide], tops[wide], rights[wide], bottoms[wide]
        sub_x = lefts[:, None] + (rights - lefts)[:, None] * fractions
        sub_y = tops[:, None] + (bottoms - tops)[:, None] * fractions
        vectors, sides = _squares(wcs, sub_x, sub_y)
        found.append(vectors.reshape(-1, 3))
        lefts, rights = sub_x[:, None, :-1], sub_x[:, None, 1:]
        tops, bottoms = sub_y[:, :-1, None], sub_y[:, 1:, None]
        shape = sides.shape
        lefts, rights = np.broadcast_to(lefts, shape), np.broadcast_to(rights, shape)
        tops, bottoms = np.broadcast_to(tops, shape), np.broadcast_to(bottoms, shape)
    return np.concatenate(found), float(sides.max()) if sides.size else 0.0


def _outline(wcs: Any, width: int, height: int, step: float, limit: float) -> np.ndarray | None:
    """Sky vectors (n, 3) going once round the image's outer pixel edge, at most `step` px apart, when
    they bound the image's region of the sky: every one has a sky position, neighbours lie at most `limit`
    degrees apart, and all lie within OUTLINE_RADIUS of the middle pixel. None otherwise (the grid of
    samples decides). The projections' undefined regions lie outside a convex region of the projection
    plane (a SIN horizon's disc, an AIT or MOL ellipse): an image whose edge lies inside it lies inside
    whole."""
    nx, ny = max(2, math.ceil(width / step) + 1), max(2, math.ceil(height / step) + 1)
    xs, ys = np.linspace(-0.5, width - 0.5, nx), np.linspace(-0.5, height - 0.5, ny)
    around_x = np.concatenate([xs, np.full(ny - 2, xs[-1]), xs[::-1], np.full(ny - 2, xs[0])])
    around_y = np.concatenate([np.full(nx, ys[0]), ys[1:-1], np.full(nx, ys[-1]), ys[-2:0:-1]])
    ring = sky_vectors(wcs, around_x, around_y)
    middle = sky_vectors(wcs, np.array([(width - 1) / 2]), np.array([(height - 1) / 2]))
    if not (np.all(np.isfinite(ring)) and np.all(np.isfinite(middle))):
        return None
    if _angle(ring, np.roll(ring, 1, axis=0)).max() > limit or _angle(ring, middle).max() > OUTLINE_RADIUS:
        return None
    return ring


def _fewest(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """The fewest points of a closed outline (every k-th, k a power of two) whose great-circle polygon
    passes within `tolerance` degrees of every point of it (a TAN image's edges are great circles: its
    corners and a few more)."""
    count = len(ring)
    stride = 1 << max(0, (count // 4).bit_length() - 1)
    while stride > 1:
        kept = np.arange(0, count, stride)
        ends = np.append(kept[1:], count) % count
        normals = np.cross(ring[kept], ring[ends])
        lengths = np.linalg.norm(normals, axis=1)
        if np.all(lengths > 0):
            segment = np.repeat(np.arange(len(kept)), np.diff(np.append(kept, count)))
            off = np.abs(np.einsum("ij,ij->i", ring, normals[segment] / lengths[segment, None]))
            if math.degrees(math.asin(min(1.0, float(off.max())))) <= tolerance:
                return ring[kept]
        stride //= 2
    return ring


def wcs_cards(wcs: Any) -> dict[str, HeaderValue]:
    """The celestial WCS as header cards (SIP and TPV included) that `app.sky.wcs.celestial_wcs` rebuilds.
    WCSLIB's own cards, when they all have a plain form (`fits_header.plain_cards`) and there is no SIP
    (which astropy adds itself), are typed as astropy's header would type them, without building one."""
    plain = _plain_wcs_cards(wcs)
    if plain is not None:
        return plain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = wcs.to_header(relax=True)
    cards: dict[str, HeaderValue] = {}
    for keyword, value in header.items():
        if keyword in COMMENTARY:  # no part of the WCS
            continue
        cards[keyword] = value if isinstance(value, bool | int | float | str) else str(value)
    return cards


def _plain_wcs_cards(wcs: Any) -> dict[str, HeaderValue] | None:
    """`wcs_cards` read straight from WCSLIB's header text (what astropy's `to_header(relax=True)` parses
    into its header when there is no SIP), or None when a card of it is not plain."""
    from astropy.wcs import WCSHDO_P14, WCSHDO_all

    from app.formats.fits_header import plain_cards

    if getattr(wcs, "sip", None) is not None or getattr(wcs, "wcs", None) is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = wcs.wcs.to_header(WCSHDO_P14 | WCSHDO_all)
    parsed = plain_cards(text.encode("ascii", "replace"))
    if parsed is None:
        return None
    cards: dict[str, HeaderValue] = {}
    for keyword, value, _ in parsed:
        if keyword in COMMENTARY:  # no part of the WCS
            continue
        if value is None:  # a card without a value: astropy's own reading says what it is
            return None
        cards[keyword] = value
    return cards


def coverage(wcs: Any, width: int, height: int) -> dict[str, Any] | None:
    """The coverage of an image through its celestial WCS: `moc` (ASCII MOC, ICRS), `moc_order`, `wcs`
    (its cards), `size` ([width, height]), `partial` (some pixels off the projection) and the centre
    (`center_ra`, `center_dec`); None when no pixel has a sky position."""
    from astropy.wcs.utils import proj_plane_pixel_scales
    from mocpy import MOC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scale = float(np.min(np.abs(proj_plane_pixel_scales(wcs))))
    if not math.isfinite(scale) or scale <= 0 or width < 1 or height < 1:
        return None
    order = MAX_ORDER
    while order > 0 and (cell_degrees(order) < 2 * scale
                         or 2 * (width + height) * scale / cell_degrees(order) > MOST_BORDER_CELLS):
        order -= 1
    import astropy.units as u

    def lonlat(vectors: np.ndarray) -> tuple[Any, Any]:
        ra = np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0])) % 360.0
        return ra * u.deg, np.degrees(np.arcsin(np.clip(vectors[:, 2], -1.0, 1.0))) * u.deg

    step = max(1.0, cell_degrees(order) / 5 / scale, math.sqrt(width * height / MOST_SAMPLES))
    # the outline's neighbouring points as far apart as the grid's may be (see below)
    ring = _outline(wcs, width, height, step, max(cell_degrees(order) / 4, 1.5 * step * scale))
    if ring is not None:  # an ordinary field: the cells its outline encloses (or touches), and their ring
        moc = MOC.from_polygon(*lonlat(_fewest(ring, cell_degrees(order) / 8)), max_depth=order)
        moc, points, defined = moc.add_neighbours(), ring, np.ones(1, bool)
    else:
        # sample until neighbouring samples are a quarter of a cell apart: a grid, refined where the
        # projection stretches pixels (near a SIN horizon or an AIT edge), else coarser cells
        while True:
            step = max(1.0, cell_degrees(order) / 5 / scale, math.sqrt(width * height / MOST_SAMPLES))
            # a square is sampled again only where the projection stretches it well past the grid's own
            # step (samples at most 3/4 of a cell apart, and the MOC's ring of neighbours, keep every pixel
            # in it)
            limit = max(cell_degrees(order) / 4, 1.5 * step * scale)
            points, largest = _samples(wcs, width, height, step, limit)
            if largest <= limit or order == 0:
                break
            order -= 1
        defined = np.all(np.isfinite(points), axis=1)
        if not defined.any():
            return None
        points = points[defined]
        ra, dec = lonlat(points)
        moc = MOC.from_lonlat(ra, dec, max_norder=order).add_neighbours()
    text = moc.to_string(format="ascii")
    while len(text) > MOST_MOC_TEXT and order > 0:
        order -= 1
        moc = moc.degrade_to_order(order)
        text = moc.to_string(format="ascii")
    middle = sky_vectors(wcs, np.array([(width - 1) / 2]), np.array([(height - 1) / 2]))[0]
    if not np.all(np.isfinite(middle)):
        middle = points.mean(axis=0)
        middle = middle / (np.linalg.norm(middle) or 1.0)
    return {"moc": text, "moc_order": order, "wcs": wcs_cards(wcs), "size": [int(width), int(height)],
            "partial": bool(not defined.all()),
            "center_ra": float(math.degrees(math.atan2(middle[1], middle[0])) % 360.0),
            "center_dec": float(math.degrees(math.asin(max(-1.0, min(1.0, float(middle[2]))))))}


def with_coverage(sky: dict[str, Any] | None, header: Mapping[str, HeaderValue], width: int,
                  height: int, built: Any = None) -> dict[str, Any] | None:
    """An image's `sky` record with its coverage added (from the celestial WCS its header cards build, or
    `built`, that WCS as the reader built it from the same cards); an all-sky map without corners (they
    lie off the projection) gets a record from its coverage alone. Unchanged when the header has no usable
    celestial WCS."""
    wcs = built if built is not None else celestial_wcs(header)
    if wcs is None:
        return sky
    try:
        found = coverage(wcs, width, height)
    except Exception:  # a WCS astropy builds but cannot evaluate: the image keeps what it had
        return sky
    if found is None:
        return sky
    if sky is None:
        from astropy.wcs.utils import proj_plane_pixel_scales

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scale = float(np.mean(proj_plane_pixel_scales(wcs)) * 3600.0)
        return {**found, "pixel_scale_arcsec": scale, "frame": "icrs",
                "ctype": [str(c) for c in wcs.wcs.ctype]}
    # the recorded centre (the middle pixel) stays as it was
    return {**found, **sky}


# the exact test ------------------------------------------------------------------------------------

def _unit(ra: float, dec: float) -> np.ndarray:
    a, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])


class PixelFootprint:
    """The pixels of one image on the sky, for exact cone tests (the border found once, when needed)."""

    def __init__(self, wcs: Any, width: int, height: int, partial: bool) -> None:
        from astropy.coordinates import ICRS
        from astropy.wcs.utils import wcs_to_celestial_frame

        self.wcs, self.width, self.height, self.partial = wcs, width, height, partial
        try:
            frame = wcs_to_celestial_frame(wcs)
        except ValueError:  # a frame astropy does not name: its own world_to_pixel decides
            frame = None
        self.icrs = isinstance(frame, ICRS) and (wcs.wcs.lng, wcs.wcs.lat) == (0, 1)
        self._border: tuple[np.ndarray, np.ndarray] | None = None

    def _centre_on_image(self, ra: float, dec: float) -> bool:
        """Whether (ra, dec) falls on a pixel: it goes to pixels on the image and back to within a pixel."""
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore")
            try:
                if self.icrs:  # the common case, without astropy's frame machinery
                    x, y = self.wcs.world_to_pixel_values(ra, dec)
                else:
                    x, y = self.wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"))
            except Exception:  # wcslib refuses the position: it is off the projection
                return False
        x, y = float(x), float(y)
        if not (math.isfinite(x) and math.isfinite(y) and -0.5 <= x <= self.width - 0.5
                and -0.5 <= y <= self.height - 0.5):
            return False
        # back to the sky, and the pixel's size there (from the neighbours that are on the projection: at
        # an AIT or MOL map's rim some are not)
        back = sky_vectors(self.wcs, np.array([x, x - 1, x + 1, x, x]), np.array([y, y, y, y - 1, y + 1]))
        if not np.all(np.isfinite(back[0])):
            return False
        sizes = _angle(back[1:], back[0])
        sizes = sizes[np.isfinite(sizes)]
        return sizes.size > 0 and float(_angle(back[0], _unit(ra, dec))) <= float(sizes.max())

    def _border_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """0-based (x, y) of the pixels on the region's border: the edge rows and columns (those defined),
        and the defined pixels next to undefined ones."""
        w, h = self.width, self.height
        xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h, int), np.full(h, w - 1)])
        ys = np.concatenate([np.zeros(w, int), np.full(w, h - 1), np.arange(h), np.arange(h)])
        if self.partial:
            defined = self._defined()
            padded = np.pad(defined, 1, constant_values=True)
            near_undefined = np.zeros_like(defined)
            for dy, dx in _NEIGHBOURS:
                near_undefined |= ~padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            more_y, more_x = np.nonzero(defined & near_undefined)
            xs, ys = np.concatenate([xs, more_x]), np.concatenate([ys, more_y])
        pairs = np.unique(np.stack([xs, ys], axis=1), axis=0)
        return pairs[:, 0].astype(float), pairs[:, 1].astype(float)

    def _defined(self) -> np.ndarray:
        """Which pixel centres (height, width) are on the projection: from a coarse grid of at most
        `_CHUNK` pixels, every pixel evaluated only in (and next to) the blocks where that changes."""
        w, h = self.width, self.height
        stride = max(1, math.ceil(math.sqrt(w * h / _CHUNK)))
        xs = np.unique(np.append(np.arange(0, w, stride), w - 1))
        ys = np.unique(np.append(np.arange(0, h, stride), h - 1))
        if stride == 1 or len(xs) < 2 or len(ys) < 2:  # small enough (or a single row): every pixel
            xs, ys = np.arange(w), np.arange(h)
        gx, gy = np.meshgrid(xs.astype(float), ys.astype(float))
        coarse: np.ndarray = np.all(np.isfinite(sky_vectors(self.wcs, gx, gy)), axis=1).reshape(gx.shape)
        if coarse.shape == (h, w):
            return coarse
        corners = np.stack([coarse[:-1, :-1], coarse[:-1, 1:], coarse[1:, :-1], coarse[1:, 1:]])
        mixed = corners.any(axis=0) & ~corners.all(axis=0)
        grown = np.pad(mixed, 1)
        mixed = np.zeros_like(mixed)
        for dy in range(3):
            for dx in range(3):
                mixed |= grown[dy:dy + mixed.shape[0], dx:dx + mixed.shape[1]]
        # each pixel's block, and the value of a block that does not change (its corners agree)
        bx = np.clip(np.searchsorted(xs, np.arange(w), side="right") - 1, 0, len(xs) - 2)
        by = np.clip(np.searchsorted(ys, np.arange(h), side="right") - 1, 0, len(ys) - 2)
        defined: np.ndarray = coarse[:-1, :-1][by[:, None], bx[None, :]]
        exact_y, exact_x = np.nonzero(mixed[by[:, None], bx[None, :]])
        for start in range(0, len(exact_x), _CHUNK):
            px, py = exact_x[start:start + _CHUNK], exact_y[start:start + _CHUNK]
            vectors = sky_vectors(self.wcs, px.astype(float), py.astype(float))
            defined[py, px] = np.all(np.isfinite(vectors), axis=1)
        return defined

    def border(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (n, 3) of the border pixels' centres and each one's allowance: half the largest
        angle (degrees) to a neighbouring pixel centre."""
        if self._border is None:
            xs, ys = self._border_pixels()
            centres = sky_vectors(self.wcs, xs, ys)
            reach = np.zeros(len(xs))
            for dy, dx in _NEIGHBOURS:
                step = _angle(centres, sky_vectors(self.wcs, xs + dx, ys + dy))
                reach = np.fmax(reach, np.where(np.isfinite(step), step, 0.0))
            keep = np.all(np.isfinite(centres), axis=1)
            self._border = (centres[keep], reach[keep] / 2)
        return self._border

    def matches(self, ra: float, dec: float, radius: float, mode: str) -> bool:
        """`contains`: (ra, dec) falls on a pixel; `overlaps`: some pixel lies within `radius` degrees."""
        if self._centre_on_image(ra, dec):
            return True
        if mode == "contains":
            return False
        centres, allowance = self.border()
        if not len(centres):
            return False
        return bool(np.any(_angle(centres, _unit(ra, dec)) <= radius + allowance))


@lru_cache(maxsize=256)
def _footprint(cards: str, width: int, height: int, partial: bool) -> PixelFootprint | None:
    wcs = celestial_wcs(json.loads(cards))
    return None if wcs is None else PixelFootprint(wcs, width, height, partial)


@lru_cache(maxsize=1024)
def _moc(text: str) -> Any:
    from mocpy import MOC

    return MOC.from_string(text, format="ascii")


# mocpy frees a MOC through its Rust library, which is gone once the interpreter tears modules down
atexit.register(_moc.cache_clear)


def moc_of(sky: Mapping[str, Any]) -> Any:
    """The record's MOC (mocpy), parsed once per text."""
    return _moc(str(sky["moc"]))


def coverage_matches(sky: Mapping[str, Any], ra: float, dec: float, radius: float, mode: str) -> bool:
    """The exact cone test for a record `has_coverage`: its MOC first (no cell near the cone: no pixel
    either), then its pixels."""
    import astropy.units as u
    from mocpy import MOC

    if mode == "overlaps" and radius >= 180:  # the whole sky (the sky page's listing): no WCS needed
        return True
    moc = moc_of(sky)
    order = max(int(sky.get("moc_order") or moc.max_order), 0)
    if mode == "contains" or radius <= 0:
        near = bool(np.asarray(moc.contains_lonlat(np.array([ra]) * u.deg, np.array([dec]) * u.deg))[0])
    elif radius >= 90:
        near = True
    else:
        # the cone's cells no finer than its rim needs (a few dozen cells): coarser ones still cover it
        while order > 0 and 2 * math.pi * radius / cell_degrees(order) > 64:
            order -= 1
        cone = MOC.from_cone(ra * u.deg, dec * u.deg, radius=radius * u.deg, max_depth=order,
                             delta_depth=2)
        near = len(cone.intersection(moc).to_depth29_ranges) > 0
    if not near:
        return False
    width, height = (int(v) for v in sky["size"])
    footprint = _footprint(json.dumps(sky["wcs"], sort_keys=True), width, height, bool(sky.get("partial")))
    return footprint is not None and footprint.matches(ra, dec, radius, mode)


def coverage_cells(sky: Mapping[str, Any], order: int) -> list[int]:
    """The record's MOC as cells of `order` (nested; a coarser cell as all the finer cells it holds)."""
    moc = moc_of(sky)
    if moc.max_order > order:
        moc = moc.degrade_to_order(order)
    ranges = moc.to_depth29_ranges
    shift = 2 * (29 - order)
    cells: list[int] = []
    for low, high in np.asarray(ranges, dtype=np.uint64).reshape(-1, 2):
        cells.extend(range(int(low) >> shift, int(high) >> shift))
    return cells


footprint.use_coverage(sys.modules[__name__])  # type: ignore[arg-type,unused-ignore]  # the store's exact cone test and backfill
