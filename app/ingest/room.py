"""Room on the data folder's disk for a file's pyramids: what one plane's pyramids may take at most, and the
check that refuses a file before anything of it is written (app/ingest/tiling.py)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from app.exceptions import DiskFull
from app.tiles import pyramid, science

# room left beside a file's pyramids (the catalog, thumbnails, other jobs' small writes)
ROOM_MARGIN = 1 << 20
JPEG_TILE_HEADERS = 2048  # a display tile's JPEG headers and tables, at most
THUMBNAIL_BYTES = 1 << 16


def pyramid_bytes(width: int, height: int, exact: bool = False) -> int:
    """What one plane's pyramids may take on disk, at most: the science pyramid's uncompressed 32-bit
    values in whole tiles at every level (and, with `exact`, the full-resolution 64-bit copy), the display
    pyramid's JPEG tiles (counted at a byte a pixel plus their headers) at every level down to one pixel,
    and the thumbnail."""
    total = THUMBNAIL_BYTES + (width * height * 8 + 4096 if exact else 0)
    w, h = width, height
    while True:
        side = science.TIFF_TILE
        total += math.ceil(w / side) * math.ceil(h / side) * side * side * 4
        if w <= side and h <= side:
            break
        w, h = math.ceil(w / 2), math.ceil(h / 2)
    w, h = width, height
    while True:
        tiles = math.ceil(w / pyramid.TILE_SIZE) * math.ceil(h / pyramid.TILE_SIZE)
        # a tile's overlap repeats its neighbours' edge pixels
        total += w * h + tiles * (JPEG_TILE_HEADERS + 4 * pyramid.OVERLAP * pyramid.TILE_SIZE)
        if w <= 1 and h <= 1:
            break
        w, h = math.ceil(w / 2), math.ceil(h / 2)
    return total


def check_room(planes: list[Any], work: Path, adaptive_scratch: bool = False, unzipped: int = 0) -> None:
    """Refuse, before anything is written, a file whose pyramids the data folder's disk has no room for.
    `adaptive_scratch`: the planes are adaptively equalised, through a scratch file of a byte a pixel;
    `unzipped`: the bytes of the file's decompressed copy (`Reader.unzip`), kept while it is read."""
    needed = sum(pyramid_bytes(plane.width, plane.height, science.needs_exact(plane.bitpix))
                 + (plane.width * plane.height * 3 * 2 if _in_colour(plane) else 0)
                 + (plane.width * plane.height if adaptive_scratch else 0)
                 for plane in planes) + unzipped + ROOM_MARGIN
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if needed > free:
        from app.formatting import human_bytes

        copy = f" (and its {human_bytes(unzipped)} decompressed copy)" if unzipped else ""
        raise DiskFull(f"the disk of the data folder has {human_bytes(free)} free and the "
                       f"pyramids of this file{copy} need up to {human_bytes(needed)}: nothing was written")


def _in_colour(plane: Any) -> bool:
    """Whether a plane is a colour picture (whose red, green and blue are kept for the readout), as its
    header says: BANDS (rasters, TIFF) or SamplesPerPixel (DICOM)."""
    for keyword in ("BANDS", "SamplesPerPixel"):
        bands = plane.header.get(keyword)
        if isinstance(bands, int) and not isinstance(bands, bool):
            return bands >= 3
    return False
