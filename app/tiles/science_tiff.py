"""The science pyramid of a plane read strip by strip (app/tiles/stream.py), written by NumPy: the file
libvips' `tiffsave(tile=True, pyramid=True, compression="none")` writes of the plane cast to 32-bit floats
(`science.write`), with the same pages and the same values, without libvips reading the plane again.

The plane's rows come a tile's height at a time, are cut into tiles and appended to the file; every row
pair is also averaged into the next page's row (libvips' mean of each 2x2 box, summed in the same order,
so that each value is bit for bit libvips' own), which is tiled in turn. A page follows while the one
before is wider or taller than a tile (each half the size, rounded down). The page directories are written
last (a little-endian BigTIFF; a tile's offset may be anywhere in the file), so memory holds a tile row of
each page, whatever the plane's size, and the file's pixels are read once: libvips reading them through
its TIFF loader cost about as much again as writing the pyramid. The tiles of a large plane go to the disk
with direct I/O (`_Output`), each tile row filled tile by tile in memory laid out as the file holds it.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from app.tiles.science import NAME, TIFF_TILE

_SHORT, _LONG, _LONG8 = 3, 4, 16
_FLOAT = np.dtype("<f4")
_TILE_BYTES = TIFF_TILE * TIFF_TILE * _FLOAT.itemsize
_ALIGN = 4096  # where a direct write's offsets, lengths and memory start
DIRECT_FROM = 64 * 1024 * 1024  # bytes of a plane's values from which its pyramid is written direct


def shrunk(rows: np.ndarray) -> np.ndarray:
    """Each 2x2 box of `rows` (an even number of them) averaged as libvips' pyramid does; an odd last
    column is left out."""
    width = rows.shape[1] // 2 * 2
    top, bottom = rows[0::2, :width], rows[1::2, :width]
    total: np.ndarray = top[:, 0::2] + top[:, 1::2]
    total += bottom[:, 0::2]
    total += bottom[:, 1::2]
    total *= np.float32(0.25)
    return total


class _Page:
    """One page of the pyramid being written: its tile row being filled (tile by tile, as the file holds
    it), and where its tiles went."""

    def __init__(self, out: _Output, width: int, height: int) -> None:
        self.out, self.width, self.height = out, width, height
        self.across, self.down = math.ceil(width / TIFF_TILE), math.ceil(height / TIFF_TILE)
        self.offsets = np.zeros(self.across * self.down, dtype=np.uint64)
        self.band = _aligned_zeros((self.across, TIFF_TILE, TIFF_TILE))
        self.whole = width // TIFF_TILE  # tiles filled across; a last one in part
        self.filled = 0  # rows of `band` filled
        self.written = 0  # tile rows written
        self.odd: np.ndarray | None = None  # a row waiting for its pair, for the next page
        smaller = (width // 2, height // 2)
        more = (width > TIFF_TILE or height > TIFF_TILE) and min(smaller) > 0
        self.next = _Page(out, *smaller) if more else None

    def add(self, rows: np.ndarray) -> None:
        """The next rows of this page (float32, `width` wide)."""
        start, whole = 0, self.whole
        while start < len(rows):
            take = min(TIFF_TILE - self.filled, len(rows) - start)
            part, band = rows[start:start + take], self.band
            rows_at = slice(self.filled, self.filled + take)
            band[:whole, rows_at] = part[:, :whole * TIFF_TILE].reshape(take, whole, TIFF_TILE).swapaxes(0, 1)
            if whole < self.across:
                band[whole, rows_at, :self.width - whole * TIFF_TILE] = part[:, whole * TIFF_TILE:]
            self.filled += take
            start += take
            if self.filled == TIFF_TILE:
                self._write_band()
        if self.next is not None:
            if self.odd is not None:
                rows = np.concatenate([self.odd, rows])
            paired = len(rows) // 2 * 2
            self.odd = rows[paired:].copy() if paired < len(rows) else None
            if paired:
                self.next.add(shrunk(rows[:paired]))

    def finish(self) -> None:
        """Write what is left of this page and the ones after it (an odd last row is left out, as the
        next page's height is rounded down)."""
        if self.filled:
            self.band[:, self.filled:] = 0
            self._write_band()
        if self.next is not None:
            self.next.finish()

    def _write_band(self) -> None:
        at = self.out.append(self.band)
        first = self.written * self.across
        self.offsets[first:first + self.across] = at + np.arange(self.across, dtype=np.uint64) * _TILE_BYTES
        self.written += 1
        self.filled = 0

    def pages(self) -> list[_Page]:
        return [self, *(self.next.pages() if self.next is not None else [])]


def _aligned_zeros(shape: tuple[int, int, int]) -> np.ndarray:
    """Float32 zeros whose memory starts on an `_ALIGN` boundary (as a direct write needs)."""
    size = math.prod(shape) * _FLOAT.itemsize
    raw = np.zeros(size + _ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % _ALIGN
    return raw[skip:skip + size].view(_FLOAT).reshape(shape)


class _Output:
    """The file the tiles are appended to, from `_ALIGN` on (the header is written last, in front). A
    large pyramid is written with O_DIRECT where the file system allows it: its gigabytes then go straight
    to the disk, where through the page cache the kernel's copying of them cost more CPU than all the rest
    of the writing (11.5 s of system time for 5 GB here, 0.7 s direct)."""

    def __init__(self, target: Path, direct: bool) -> None:
        self.target = target
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self.fd = -1
        self.direct = direct and hasattr(os, "O_DIRECT")
        if self.direct:
            try:
                self.fd = os.open(target, flags | os.O_DIRECT, 0o644)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                self.direct = False  # a file system without direct I/O: written as usual
        if self.fd < 0:
            self.fd = os.open(target, flags, 0o644)
        self.position = _ALIGN

    def append(self, tiles: np.ndarray) -> int:
        """Write `tiles` (whole tiles, from memory on an `_ALIGN` boundary) at the end; where they went."""
        at = self.position
        data = tiles.data.cast("B")
        done = 0
        while done < len(data):
            try:
                done += os.pwrite(self.fd, data[done:], at + done)
            except OSError as error:
                if not self.direct or error.errno != errno.EINVAL:
                    raise
                # a device whose direct writes need a coarser alignment: the rest written as usual
                os.close(self.fd)
                self.fd = os.open(self.target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
                self.direct = False
        self.position += len(data)
        return at

    def close(self) -> None:
        os.close(self.fd)


def _directories(out: BinaryIO, pages: list[_Page]) -> None:
    """Each page's tile offsets and byte counts, then the chain of page directories, at the end of the
    file; the header pointed at the first."""
    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        packed = {_SHORT: "<H", _LONG: "<I", _LONG8: "<Q"}[kind]
        return struct.pack("<HHQ", tag, kind, count) + struct.pack(packed, value).ljust(8, b"\0")

    arrays = []
    for page in pages:
        tiles = len(page.offsets)
        at = out.tell()
        out.write(page.offsets.astype("<u8").tobytes())
        out.write(np.full(tiles, _TILE_BYTES, dtype="<u8").tobytes())
        arrays.append((at, at + 8 * tiles) if tiles > 1 else (int(page.offsets[0]), _TILE_BYTES))
    count = 12
    size = 8 + count * 20 + 8
    first = out.tell()
    for number, (page, (offsets, counts)) in enumerate(zip(pages, arrays, strict=True)):
        tiles = len(page.offsets)
        entries = [entry(256, _LONG, 1, page.width), entry(257, _LONG, 1, page.height),
                   entry(258, _SHORT, 1, 32), entry(259, _SHORT, 1, 1), entry(262, _SHORT, 1, 1),
                   entry(277, _SHORT, 1, 1), entry(284, _SHORT, 1, 1), entry(322, _LONG, 1, TIFF_TILE),
                   entry(323, _LONG, 1, TIFF_TILE), entry(324, _LONG8, tiles, offsets),
                   entry(325, _LONG8, tiles, counts), entry(339, _SHORT, 1, 3)]
        following = first + (number + 1) * size if number + 1 < len(pages) else 0
        out.write(struct.pack("<Q", count) + b"".join(entries) + struct.pack("<Q", following))
    out.seek(8)
    out.write(struct.pack("<Q", first))


def write(folder: Path, width: int, height: int, rows: Callable[[int, int], np.ndarray],
          strip_rows: int = TIFF_TILE, direct: bool | None = None) -> Path:
    """Write `folder/science.tif` of a plane `width` x `height` whose display rows `rows(top, count)` gives
    (any numeric type: cast to float32, as `science.values` casts), `strip_rows` at a time. `direct`:
    whether the tiles go to the disk with direct I/O (`_Output`); by default a plane of more than
    DIRECT_FROM bytes does."""
    target = folder / NAME
    output = _Output(target, width * height * _FLOAT.itemsize > DIRECT_FROM if direct is None else direct)
    try:
        top = _Page(output, width, height)
        for first in range(0, height, strip_rows):
            top.add(np.asarray(rows(first, min(strip_rows, height - first)), dtype=_FLOAT))
        top.finish()
    finally:
        output.close()
    with target.open("r+b") as out:
        out.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
        out.seek(0, os.SEEK_END)
        _directories(out, top.pages())
    return target
