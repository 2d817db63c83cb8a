"""HEALPix geometry of a HiPS survey (HiPS 1.0, IVOA 2017): orders, tile names, and where each pixel of a
tile lies on the sky.

A tile of order k and index N (nested scheme) holds the HEALPix cells of order k + 9 that descend from
cell N: a tile is `WIDTH` = 2**9 = 512 pixels square. Inside a tile, a cell's nested index below N is the
interleave of two face coordinates, ix in the even bits and iy in the odd bits (ix grows towards the east
corner of the cell, iy towards the west one). In a PNG or JPEG tile, top row first, the pixel in row r and
column c is ix = r, iy = c: the south corner is at the top left, the north corner at the bottom right. A FITS
tile holds the same picture with its rows bottom-up (FITS row 1 is the image's bottom row), as hipsgen's are:
the FITS header `Tile2HPX` gives (its HPX projection WCS, the one hipsgen writes) puts every pixel where
this module does, which tests/hips/test_geometry.py checks with astropy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache
from pathlib import PurePosixPath

import numpy as np

TILE_ORDER = 9  # log2 of the tile width
WIDTH = 1 << TILE_ORDER
ALLSKY_ORDER = 3  # Norder3/Allsky.*: every tile of order 3, shrunk, in one picture
ALLSKY_TILE = 64  # the width of one tile in the Allsky picture
ALLSKY_COLUMNS = 27  # tiles per row of the Allsky picture (768 tiles: 27 x 29)
MIN_ORDER = ALLSKY_ORDER
MAX_ORDER = 13  # a pixel of 0.05": deeper than any image the archive holds needs
# The MOC resolves blocks of 32 x 32 tile pixels: order k + 4 for tiles of order k.
MOC_SHIFT = 4
EXTENSIONS = {"png": "png", "jpeg": "jpg", "fits": "fits"}  # hips_tile_format word -> file extension


def pixel_size_arcsec(healpix_order: int) -> float:
    """The side of a HEALPix cell of that order (the square root of its area), in arcseconds."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4**healpix_order))) * 3600


def order_for_scale(scale_arcsec: float) -> int:
    """The tile order whose pixels are just finer than `scale_arcsec` (hipsgen's choice: the survey keeps the
    finest image's resolution), between `MIN_ORDER` and `MAX_ORDER`."""
    if not math.isfinite(scale_arcsec) or scale_arcsec <= 0:
        return MIN_ORDER
    for order in range(MIN_ORDER, MAX_ORDER + 1):
        if pixel_size_arcsec(order + TILE_ORDER) <= scale_arcsec:
            return order
    return MAX_ORDER


def survey_order(scales_arcsec: Iterable[float]) -> int:
    """The survey's deepest order: that of its finest pixel scale (`MIN_ORDER` when it is empty)."""
    return max((order_for_scale(scale) for scale in scales_arcsec), default=MIN_ORDER)


def tile_path(order: int, npix: int, extension: str) -> PurePosixPath:
    """`NorderK/DirD/NpixN.ext`, where D is N rounded down to a multiple of 10000."""
    return PurePosixPath(f"Norder{order}/Dir{(npix // 10000) * 10000}/Npix{npix}.{extension}")


def interleave(even: np.ndarray, odd: np.ndarray, bits: int) -> np.ndarray:
    """The integers whose even bits are those of `even` and odd bits those of `odd` (a Z-order curve)."""
    result = np.zeros(np.broadcast(even, odd).shape, dtype=np.int64)
    for bit in range(bits):
        result |= ((even >> bit) & 1).astype(np.int64) << (2 * bit)
        result |= ((odd >> bit) & 1).astype(np.int64) << (2 * bit + 1)
    return result


@lru_cache(maxsize=4)
def sub_indices(width: int = WIDTH) -> np.ndarray:
    """(width, width) nested indices below a tile's own cell of the pixels of a PNG tile (row r, column c:
    ix = r, iy = c). Read-only."""
    bits = int(math.log2(width))
    rows, cols = np.meshgrid(np.arange(width), np.arange(width), indexing="ij")
    indices = interleave(rows, cols, bits)
    indices.setflags(write=False)
    return indices


def tile_cells(order: int, npix: int, width: int = WIDTH) -> np.ndarray:
    """(width, width) nested indices, at order `order` + log2(width), of a PNG tile's pixels."""
    return np.int64(npix) * width * width + sub_indices(width)


def tile_lonlat(order: int, npix: int, width: int = WIDTH, where: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """ICRS longitude and latitude (degrees, (width, width), PNG orientation) of the centres of a tile's
    pixels, the tile drawn `width` pixels wide (each pixel a cell of order `order` + log2(width)); with
    `where` (a (width, width) mask), of those pixels only, flat."""
    from astropy_healpix import healpix_to_lonlat

    cells = tile_cells(order, npix, width)
    if where is not None:
        cells = cells[where]
    lon, lat = healpix_to_lonlat(cells, (1 << order) * width, order="nested")
    return np.asarray(lon.deg, dtype=np.float64), np.asarray(lat.deg, dtype=np.float64)


def child_offsets() -> list[tuple[int, int, int]]:
    """(child q, top row, left column) of the four children of a tile, in units of half a tile: child q of
    tile N is tile 4 N + q at the next order; bit 0 of q is ix (down), bit 1 is iy (right)."""
    return [(q, q & 1, (q >> 1) & 1) for q in range(4)]


def allsky_place(npix: int) -> tuple[int, int]:
    """(top, left) in the Allsky picture (top row first) of tile `npix` of order 3."""
    return (npix // ALLSKY_COLUMNS) * ALLSKY_TILE, (npix % ALLSKY_COLUMNS) * ALLSKY_TILE


def allsky_size() -> tuple[int, int]:
    """(height, width) of the Allsky picture."""
    tiles = 12 * 4**ALLSKY_ORDER
    return math.ceil(tiles / ALLSKY_COLUMNS) * ALLSKY_TILE, ALLSKY_COLUMNS * ALLSKY_TILE


def parents(order: int, tiles: Iterable[int], down_to: int = MIN_ORDER) -> dict[int, set[int]]:
    """The tiles of every order from `order` - 1 down to `down_to` that hold any of `tiles`."""
    found: dict[int, set[int]] = {}
    current = set(tiles)
    for level in range(order - 1, down_to - 1, -1):
        current = {tile >> 2 for tile in current}
        found[level] = current
    return found


def hpx_header(order: int, npix: int, width: int = WIDTH) -> dict[str, float | int | str]:
    """The HPX-projection WCS cards of a FITS tile (as hipsgen writes them: `Tile2HPX` of the CDS Java
    library), so that a FITS reader places the tile on the sky by itself."""
    bits = int(math.log2(width))
    nside_tile = 1 << order
    face = npix >> (2 * order)
    inside = npix & ((1 << (2 * order)) - 1)
    ix = int(_deinterleave(inside, order))
    iy = int(_deinterleave(inside >> 1, order))
    l_in, h_in = ix - iy, ix + iy - (nside_tile - 1)
    h_face, l_face = 1 - (face >> 2), (face & 3) << 1
    if h_face == 0 and (l_face == 6 or (l_face == 4 and l_in > 0)):
        l_face -= 8
    elif h_face != 0:
        l_face += 1
        if l_face > 3:
            l_face -= 8
    centre_x = 45.0 * (l_face + l_in / nside_tile)
    centre_y = 45.0 * (h_face + h_in / nside_tile)
    scale = 45.0 / (nside_tile << bits)
    return {
        "CTYPE1": "RA---HPX", "CTYPE2": "DEC--HPX", "CRVAL1": 0.0, "CRVAL2": 0.0,
        "CRPIX1": (width + 1) / 2 - 0.5 * (-centre_x / scale + centre_y / scale),
        "CRPIX2": (width + 1) / 2 - 0.5 * (-centre_x / scale - centre_y / scale),
        "CD1_1": -scale, "CD1_2": -scale, "CD2_1": scale, "CD2_2": -scale,
        "PV2_1": 4, "PV2_2": 3, "ORDER": order, "NPIX": npix,
    }


def _deinterleave(value: int, bits: int) -> int:
    """The even bits of `value`, packed."""
    result = 0
    for bit in range(bits):
        result |= ((value >> (2 * bit)) & 1) << bit
    return result
