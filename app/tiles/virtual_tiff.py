"""The virtual TIFF through which libvips reads a FITS plane strip by strip (app/tiles/stream.py): a
big-endian BigTIFF header built here, one strip a row, the strips' offsets in reverse order (the top display
row is the last FITS row), followed by the plane's pixels read from the file, converted or scaled to 8 bits
a block of rows at a time, as libvips asks for them."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.tiles.stream import STRIP_BYTES

if TYPE_CHECKING:
    from app.tiles.stream import FitsStrips

# TIFF SampleFormat: 1 unsigned, 2 signed, 3 IEEE float
_SAMPLE_FORMATS = {"u": 1, "i": 2, "f": 3}
_SHORT, _LONG, _LONG8 = 3, 4, 16


def tiff_header(width: int, height: int, served: np.dtype[Any]) -> bytes:
    """A big-endian BigTIFF header and IFD for a one-band image of one row a strip whose pixel bytes
    follow the header in FITS order (bottom row first): strip i (display row i) is FITS row height-1-i."""
    bits = served.itemsize * 8
    row_bytes = width * served.itemsize
    ifd_at = 16
    count = 11
    offsets_at = ifd_at + 8 + count * 20 + 8
    counts_at = offsets_at + 8 * height
    start = counts_at + 8 * height

    def entry(tag: int, kind: int, number: int, value: int) -> bytes:
        packed = {_SHORT: ">H", _LONG: ">I", _LONG8: ">Q"}[kind]
        return struct.pack(">HHQ", tag, kind, number) + struct.pack(packed, value).ljust(8, b"\0")

    entries = [entry(256, _LONG, 1, width), entry(257, _LONG, 1, height), entry(258, _SHORT, 1, bits),
               entry(259, _SHORT, 1, 1), entry(262, _SHORT, 1, 1), entry(273, _LONG8, height, offsets_at),
               entry(277, _SHORT, 1, 1), entry(278, _LONG, 1, 1), entry(279, _LONG8, height, counts_at),
               entry(284, _SHORT, 1, 1), entry(339, _SHORT, 1, _SAMPLE_FORMATS[served.kind])]
    head = b"MM" + struct.pack(">HHHQ", 43, 8, 0, ifd_at) + struct.pack(">Q", count) + b"".join(entries)
    head += struct.pack(">Q", 0)
    offsets = start + (height - 1 - np.arange(height, dtype=np.uint64)) * np.uint64(row_bytes)
    head += offsets.astype(">u8").tobytes() + np.full(height, row_bytes, dtype=">u8").tobytes()
    return head


class VirtualTiff:
    """The `pyvips.SourceCustom` of one `FitsStrips` (see the module). A failed read (the file cut short
    while it was read) ends the stream and is kept in `failure`, which the caller raises in place of
    libvips' own message."""

    def __init__(self, strips: FitsStrips, scaled: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.strips = strips
        self.scaled = scaled
        served = np.dtype(np.uint8) if scaled is not None else strips.served
        self.head = tiff_header(strips.width, strips.height, served)
        self.row_bytes = strips.width * served.itemsize
        # converted rows, made a block at a time: libvips asks for a row at a time, bottom (FITS) row last
        self.block_rows = max(1, STRIP_BYTES // (strips.width * strips.raw_dtype.itemsize))
        self.block_first = 0
        self.block = b""
        self.size = len(self.head) + strips.height * self.row_bytes
        self.position = 0
        self.failure: FormatError | None = None
        self.file = strips.path.open("rb", buffering=0)
        self.source = pyvips.SourceCustom()
        self.source.on_read(self._read)
        self.source.on_seek(self._seek)

    def close(self) -> None:
        self.strips.release(self.file)
        self.file.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """libvips' error for a read this source failed is raised as the source's own precise message."""
        try:
            yield
        except pyvips.Error:
            if self.failure is not None:
                raise self.failure from None
            raise

    def _seek(self, offset: int, whence: int) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def _read(self, size: int) -> bytes:
        size = min(size, self.size - self.position)
        if size <= 0 or self.failure is not None:
            return b""
        if self.position < len(self.head):
            data = self.head[self.position:self.position + size]
        else:
            try:
                data = self._pixels(self.position - len(self.head), size)
            except FormatError as error:
                self.failure = error
                return b""
        self.position += len(data)
        return data

    def _pixels(self, at: int, size: int) -> bytes:
        strips = self.strips
        if self.scaled is None and not strips.converted:
            self.file.seek(strips.offset + at)
            data = self.file.read(size)
            if len(data) < size:
                raise strips.truncated(self.file)
            return data
        first, last = at // self.row_bytes, (at + size - 1) // self.row_bytes
        start = self.block_first * self.row_bytes
        if at < start or at + size > start + len(self.block):
            # this row and the block below it in the file: the next ones libvips reads
            count = max(last - first + 1, self.block_rows)
            self.block_first = max(0, last + 1 - count)
            rows = strips.rows(self.file, self.block_first, last + 1 - self.block_first)
            if self.scaled is not None:
                rows = self.scaled(rows.astype(strips.served.newbyteorder("="), copy=False))
            else:
                rows = rows.astype(strips.served)
            self.block = rows.tobytes()
            start = self.block_first * self.row_bytes
        return self.block[at - start:at - start + size]
