"""The science pyramid: a tiled, pyramidal TIFF of an image's original values (float32, NaN kept), in
display orientation (top row first, as the Deep Zoom pyramid), written by libvips next to the DZI.

Values a 32-bit float would round (32-bit integers, 64-bit floats) are also kept exactly, at full
resolution only, in `exact.npy` beside it (64-bit floats, which hold every 32-bit integer), for the pixel
readout: the display needs no more than float32, and the libvips used here cannot read back the 64-bit
float TIFF it writes.

Ingest writes it into the pyramid's work folder, so it appears with the DZI in one rename. Images
ingested before it existed get one lazily, built from the original file on the first request that needs
it; a lock file keeps concurrent requests from building it twice, and it is written under a temporary
name and renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyvips

from app.exceptions import ImageXError

NAME = "science.tif"
EXACT_NAME = "exact.npy"
# A colour picture's own red, green and blue at full resolution (the science pyramid holds its grey level),
# for the readout of colour images.
COLOUR_NAME = "colour.tif"
_BAND_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4}
# Source types whose every value a 32-bit float holds exactly; the others get an exact copy.
_EXACT_IN_FLOAT = {"uchar", "char", "ushort", "short", "float"}
_STRIP_BYTES = 16 * 1024 * 1024
TIFF_TILE = 256
LOCK = ".science.lock"
PLANES = "planes"  # in a generation folder: the planes past the first
# Past this size a classic TIFF's 32-bit offsets overflow; libvips needs to be told to write BigTIFF.
_CLASSIC_TIFF_BYTES = 3_500_000_000


class MissingOriginal(ImageXError):
    """The science pyramid must be built from an original file that is no longer there."""


def values(picture: pyvips.Image) -> pyvips.Image:
    """The single float32 band that holds an image's values: science data as it is; a colour raster as
    its grey level (the value the readout shows)."""
    if picture.bands > 1:
        picture = picture.colourspace("b-w")[0] if picture.bands >= 3 else picture[0]
    return picture.cast("float")


def write(picture: pyvips.Image, folder: Path, exact: bool = True) -> Path:
    """Write `folder/science.tif` from `picture` (the pixels as the reader gives them). Uncompressed:
    noisy float data hardly compresses, and compression would make ingest several times slower.
    `exact`: also write the exact copy when the values need one (a streamed plane's own is written
    from its strips: `stream.FitsStrips.write_exact`)."""
    target = folder / NAME
    if exact and picture.bands == 1 and str(picture.format) not in _EXACT_IN_FLOAT:
        write_exact(picture, folder / EXACT_NAME)
    if picture.bands >= 3:
        size = picture.width * picture.height * 3 * _BAND_BYTES.get(str(picture.format), 8)
        picture[:3].tiffsave(str(folder / COLOUR_NAME), tile=True, tile_width=TIFF_TILE,
                             tile_height=TIFF_TILE, compression="none", strip=True,
                             bigtiff=size > _CLASSIC_TIFF_BYTES)
    data = values(picture)
    data.tiffsave(str(target), tile=True, tile_width=TIFF_TILE, tile_height=TIFF_TILE, pyramid=True,
                  compression="none", bigtiff=data.width * data.height * 4 * 4 // 3 > _CLASSIC_TIFF_BYTES,
                  strip=True)
    return target


def needs_exact(bitpix: int | None) -> bool:
    """Whether an image whose values have FITS-style `bitpix` gets an exact copy of its values (None:
    unknown, counted as needing one)."""
    return bitpix not in (8, 16, -32)


def write_exact(picture: pyvips.Image, target: Path) -> None:
    """The full-resolution values as 64-bit floats in a NumPy file, written strip by strip (memory stays
    bounded whatever the image's size)."""
    data = picture.cast("double")
    rows = max(1, _STRIP_BYTES // (8 * data.width))
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.float64, shape=(data.height, data.width))
    try:
        for top in range(0, data.height, rows):
            height = min(rows, data.height - top)
            strip = data.crop(0, top, data.width, height).write_to_memory()
            out[top:top + height] = np.frombuffer(strip, dtype=np.float64).reshape(height, data.width)
        out.flush()
    finally:
        del out


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for the duration of the block."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def plane_folder(folder: Path, index: int) -> Path:
    """Where plane `index` of an image keeps its science pyramid and dynamic tiles: the generation folder
    itself for the first plane (built at ingest), `planes/<index>/` inside it for the others (built on
    first use)."""
    return folder if index == 0 else folder / PLANES / str(index)


def ensure(folder: str, original: str, hdu: int, max_pixels: int, index: int = 0,
           within: int | None = None) -> str:
    """In a pool process: the path of the science pyramid of plane `index` of an image whose generation
    folder is `folder`, built when missing (an image ingested before science pyramids existed, or a plane
    other than the first) from plane `within` (default `index`) of image `hdu` of the file `original` (a
    DICOM series' slices are each plane 0 of their own file: `ImageRecord.plane_source`)."""
    from app.formats import sniff

    if not Path(folder).is_dir():
        raise ImageXError("this image has no tiles (it was deleted or is still being ingested)")
    place = plane_folder(Path(folder), index)
    target = place / NAME
    if target.exists():
        return str(target)
    place.mkdir(parents=True, exist_ok=True)
    folder = str(place)
    with locked(Path(folder) / LOCK):
        if target.exists():  # built by another request while this one waited
            return str(target)
        source = Path(original)
        if not source.is_file():
            raise MissingOriginal(f"the original file is no longer at {original}: the display controls "
                                  "need it once to build this image's science pyramid")
        with sniff(source)(source, max_pixels=max_pixels) as reader:
            planes = [plane for plane in reader.planes() if plane.hdu == hdu]
            if not planes:
                raise ImageXError(f"{source.name}: HDU {hdu} is no longer an image in this file")
            work = Path(folder) / f".science-{secrets.token_hex(6)}"
            unzipped = work.with_name(work.name + ".unzipped")
            work.mkdir()
            try:
                plane_index = index if within is None else within
                from app.tiles.stream import FitsStrips  # it writes through this module: imported here

                reader.unzip(unzipped)  # a large gzipped file: streamed from a decompressed copy
                strips = FitsStrips.of(reader, planes[0], plane_index)
                if strips is not None:  # a plain FITS plane: read strip by strip, never whole
                    strips.write_science(work)
                else:
                    write(reader.pixels(planes[0], plane_index), work)
                # whatever `write` keeps beside the pyramid (exact values, colours) first: the pyramid's
                # arrival is what says the plane is ready
                for produced in work.iterdir():
                    if produced.name != NAME:
                        os.replace(produced, Path(folder) / produced.name)
                os.replace(work / NAME, target)
            finally:
                for leftover in work.iterdir():
                    leftover.unlink()
                work.rmdir()
                shutil.rmtree(unzipped, ignore_errors=True)
    return str(target)


def page_count(path: str) -> int:
    """How many levels the pyramid has (full resolution is page 0, each next one half the size)."""
    return int(pyvips.Image.new_from_file(path).get("n-pages"))


def open_page(path: str, page: int) -> pyvips.Image:
    """One level of the pyramid: page 0 is full resolution, page k is 2**k times smaller (rounded down)."""
    return pyvips.Image.new_from_file(path, page=page, access="random")


def block(path: str, x: int, y: int, radius: int) -> tuple[int, int, int, int, list[list[float | None]]]:
    """In a pool process: the values of the (2 radius + 1)^2 pixels around (x, y), display orientation
    (0-based from the top left), cut at the image's edges: full width and height, the block's left and top,
    and its rows (None for NaN or infinity). Raises IndexError when (x, y) is outside the image."""
    full = open_page(path, 0)
    if not (0 <= x < full.width and 0 <= y < full.height):
        raise IndexError(f"pixel ({x}, {y}) is outside the image ({full.width}x{full.height} pixels)")
    left, top = max(0, x - radius), max(0, y - radius)
    right, bottom = min(full.width, x + radius + 1), min(full.height, y + radius + 1)
    exact = Path(path).with_name(EXACT_NAME)
    if exact.is_file():
        values = np.array(np.load(exact, mmap_mode="r")[top:bottom, left:right], dtype=np.float64)
    else:
        region = full.crop(left, top, right - left, bottom - top).write_to_memory()
        shape = (bottom - top, right - left)
        values = np.frombuffer(region, dtype=np.float32).reshape(shape).astype(np.float64)
    rows = [[float(value) if math.isfinite(value) else None for value in row] for row in values.tolist()]
    return full.width, full.height, left, top, rows


def colour(path: str, x: int, y: int) -> list[float] | None:
    """The red, green and blue of a colour image at (x, y) (display orientation), or None for an image that
    is not in colour. `path` is its science pyramid."""
    target = Path(path).with_name(COLOUR_NAME)
    if not target.is_file():
        return None
    picture = pyvips.Image.new_from_file(str(target), access="random")
    return [float(value) for value in picture.getpoint(x, y)]


def pixel(path: str, x: int, y: int) -> tuple[int, int, float | None]:
    """In a pool process: the full-resolution size and the value at (x, y), display orientation (0-based,
    from the top left); None for NaN or infinity. Raises IndexError outside the image."""
    width, height, _, _, rows = block(path, x, y, 0)
    return width, height, rows[0][0]


def reading(path: str, x: int, y: int) -> tuple[int, int, float | None, list[float] | None]:
    """In a pool process: what the readout shows at (x, y), in one call: `pixel` and, for a colour image,
    its red, green and blue (`colour`)."""
    return (*pixel(path, x, y), colour(path, x, y))
