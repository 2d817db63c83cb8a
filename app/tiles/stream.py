"""The pixels of a plain (uncompressed, not gzipped) FITS image read strip by strip, so that ingest holds a
fixed working set whatever the image's size.

libvips pulls them through a `pyvips.SourceCustom` that serves a virtual big-endian BigTIFF
(app/tiles/virtual_tiff.py): a header (one strip a row, the strips' offsets in reverse order, so that the
top display row is the last FITS row: FITS stores the bottom row first) followed by the FITS pixel bytes,
read from the file with `seek` and `read` as libvips asks for them (never memory-mapped: file-backed
pages would count in the process's memory). Values the TIFF cannot hold as the file has them
(BSCALE/BZERO/BLANK, 64-bit types) are converted per strip as astropy converts them. The display
pyramid's source serves the 8-bit picture itself, made by NumPy from blocks of rows with the very grey
levels libvips' scaling gives (`scaling.Mapping.rows`): libtiff then reads a byte a pixel, not four.
Loaded with `access="sequential"`, the image streams into `dzsave`. The science pyramid is written from
the same rows by NumPy (app/tiles/science_tiff.py: the file libvips' pyramidal `tiffsave` writes, without
a second pass of libvips' TIFF loader).

The sample that the interval and histogram are measured on (`scaling.sample`: every step-th pixel of
every step-th row) is read row by row, and the exact 64-bit copy (`science.EXACT_NAME`) strip by strip.
A small plane is read at once instead (`FitsStrips.whole`, for app/ingest/tiling.py `_render_read`).

A tile-compressed plane (`.fz`: `CompressedStrips`) is served the same way, its rows decompressed by
astropy's section reads one band of tiles at a time (the last few bands kept for the next rows), through
the memory-mapped compressed table: the working set is a few bands, whatever the image's size.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.formats.fits import RAW_TYPES, PixelPlace, compressed_unreadable

if TYPE_CHECKING:
    from app.tiles.virtual_tiff import VirtualTiff

STRIP_BYTES = 2 * 1024 * 1024
REDUCED_ROWS = 4  # rows read for each row of a reduced plane (`FitsStrips.reduced`)
# astropy's decompression (cfitsio's HCOMPRESS among them) keeps state of its own between calls: two threads
# decompressing at once (the display and science pyramids of one plane) garble each other's pixels
_DECOMPRESSING = threading.Lock()


@dataclass(frozen=True)
class FitsStrips(PixelPlace):
    """A plane's pixels where `FitsReader.strips` places them in the file, read strip by strip (see the
    module)."""

    @classmethod
    def of(cls, reader: Any, plane: Any, index: int = 0) -> FitsStrips | None:
        """Plane `index` of a reader's `plane` when the reader can place its pixels in the file (a plain
        FITS plane: `FitsReader.strips`), else None (read whole)."""
        place = reader.strips(plane, index) if hasattr(reader, "strips") else None
        if place is None:
            return None
        kind = CompressedStrips if place.compressed else cls
        return kind(**{field.name: getattr(place, field.name) for field in fields(place)})

    @property
    def raw_bytes(self) -> int:
        """What the plane's pixels take in the file, decompressed."""
        return self.width * self.height * self.raw_dtype.itemsize

    @property
    def raw_dtype(self) -> np.dtype[Any]:
        return np.dtype(RAW_TYPES[self.bitpix])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The type of the values as astropy gives them (`hdu.data`), in native byte order."""
        raw = self.raw_dtype
        if self.bitpix > 0:
            bits = self.bitpix
            if self.blank is None and self.bscale == 1:
                if self.bzero == 0:
                    return raw.newbyteorder("=")
                if bits > 8 and self.bzero == 2 ** (bits - 1):  # the FITS convention for unsigned integers
                    return np.dtype(f"u{bits // 8}")
                if bits == 8 and self.bzero == -128:
                    return np.dtype("i1")
            return np.dtype("f8" if bits > 16 else "f4")
        return raw.newbyteorder("=")

    @property
    def served(self) -> np.dtype[Any]:
        """The big-endian type libvips reads (its TIFF loader takes no 64-bit samples: those are read as
        float32, all the display and the science pyramid keep)."""
        kind = self.dtype
        if kind.itemsize == 8:
            return np.dtype(">f4")
        return kind.newbyteorder(">")

    @property
    def converted(self) -> bool:
        """Whether the bytes served differ from the file's."""
        return self.served != self.raw_dtype

    def values(self, raw: np.ndarray) -> np.ndarray:
        """File values (`raw_dtype`) as astropy gives them (`dtype`): BSCALE, BZERO applied, BLANK as NaN."""
        kind = self.dtype
        if kind == self.raw_dtype.newbyteorder("="):
            return raw.astype(kind)
        if kind.kind in "ui":  # unsigned (or signed bytes) by an offset of half the range: exact
            return (raw.astype(np.int64) + int(self.bzero)).astype(kind)
        data = np.array(raw, dtype=kind)
        if self.bscale != 1:
            np.multiply(data, self.bscale, out=data, casting="unsafe")
        if self.bzero != 0:
            data += kind.type(self.bzero)
        if self.blank is not None and self.bitpix > 0:
            data[raw == self.blank] = np.nan
        return data

    def rows(self, handle: BinaryIO, first: int, count: int) -> np.ndarray:
        """FITS rows `first` .. `first + count` (file order, bottom first) as `dtype`; FormatError when the
        file ends inside them."""
        row_bytes = self.width * self.raw_dtype.itemsize
        handle.seek(self.offset + first * row_bytes)
        data = handle.read(count * row_bytes)
        if len(data) < count * row_bytes:
            raise self.truncated(handle)
        return self.values(np.frombuffer(data, dtype=self.raw_dtype).reshape(count, self.width))

    def truncated(self, handle: BinaryIO) -> FormatError:
        """The message for pixel data cut short: the row (file order, counted from 1) the file ends in."""
        size = os.fstat(handle.fileno()).st_size
        row = max(0, size - self.offset) // (self.width * self.raw_dtype.itemsize)
        return FormatError(f"{self.path.name}: HDU {self.hdu}: the file ends inside its pixel data, in row "
                           f"{row + 1:,} of {self.height:,} ({size:,} bytes): truncated or changed while it "
                           "was read")

    def whole(self) -> np.ndarray:
        """Every row of the plane at once (display orientation: top row first), as `dtype`: for a small
        plane, read in one go."""
        with self.path.open("rb") as handle:
            try:
                return self.rows(handle, 0, self.height)[::-1]
            finally:
                self.release(handle)

    def sample(self, step: int) -> np.ndarray:
        """`scaling.sample` of the image: the finite values of every step-th pixel of every step-th row
        (display orientation: top row first), read row by row."""
        parts = []
        with self.path.open("rb") as handle:
            for top in range(0, self.height, step):
                parts.append(self.rows(handle, self.height - 1 - top, 1)[0, ::step].astype(np.float64))
        values = np.concatenate(parts) if parts else np.zeros(0)
        return values[np.isfinite(values)]

    def reduced(self, factor: int) -> np.ndarray:
        """The plane shrunk `factor` times each way (display orientation; a partial box at the right and
        bottom edges, as a Deep Zoom level's) from a strided sample of its rows, for a thumbnail read
        without the whole plane: each pixel is the mean of the finite values of its box's columns in up to
        `REDUCED_ROWS` rows spread over its box (NaN where there are none). 8-bit planes stay 8-bit (so that
        they are shown as 8-bit pictures are), the others are 32-bit floats."""
        width, height = -(-self.width // factor), -(-self.height // factor)
        columns = np.arange(width) * factor
        out = np.empty((height, width), np.float64)
        with self._opened() as row:
            for y in range(height):
                top, bottom = y * factor, min((y + 1) * factor, self.height)
                picks = np.unique(np.linspace(top, bottom - 1, min(REDUCED_ROWS, bottom - top)).round())
                rows = np.stack([row(self.height - 1 - int(pick)) for pick in picks]).astype(np.float64)
                finite = np.isfinite(rows)
                sums = np.add.reduceat(np.where(finite, rows, 0.0).sum(axis=0), columns)
                counts = np.add.reduceat(finite.sum(axis=0), columns)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[y] = np.where(counts > 0, sums / counts, np.nan)
        if self.served.kind == "u" and self.served.itemsize == 1:
            return np.rint(out).astype(np.uint8)
        return out.astype(np.float32)

    @contextlib.contextmanager
    def _opened(self) -> Iterator[Any]:
        """A reader of single FITS rows (file order) for `reduced`."""
        with self.path.open("rb") as handle:
            yield lambda fits_row: self.rows(handle, fits_row, 1)[0]

    def write_exact(self, target: Path) -> None:
        """The values as 64-bit floats in a NumPy file (display orientation), written strip by strip."""
        rows = max(1, STRIP_BYTES // (8 * self.width))
        with self.path.open("rb") as handle, target.open("wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False,
                                                       "shape": (self.height, self.width)})
            try:
                for top in range(0, self.height, rows):
                    count = min(rows, self.height - top)
                    strip = self.rows(handle, self.height - top - count, count)[::-1]
                    out.write(np.ascontiguousarray(strip, dtype="<f8").tobytes())
            finally:
                self.release(handle)

    def release(self, handle: BinaryIO) -> None:
        """Let go of what reading through `handle` holds (nothing for a plain plane)."""

    @property
    def needs_exact(self) -> bool:
        """Whether float32 rounds some of the values (as `science.write` decides for a whole image)."""
        return self.dtype.name not in ("uint8", "int8", "uint16", "int16", "float32")

    def write_science(self, folder: Path, whole: np.ndarray | None = None) -> None:
        """`science.write` of the plane into `folder`, and its exact copy when it needs one, streamed: the
        pyramid written from the rows by NumPy (app/tiles/science_tiff.py), the same file libvips writes.
        `whole`: the plane's rows, read already (`whole()`)."""
        from app.tiles import science, science_tiff

        if whole is not None:
            science_tiff.write(folder, self.width, self.height, lambda top, count: whole[top:top + count])
            if self.needs_exact:
                np.save(folder / science.EXACT_NAME, np.ascontiguousarray(whole, dtype="<f8"))
            return
        with self.path.open("rb") as handle:
            def shown(top: int, count: int) -> np.ndarray:  # display rows: FITS stores the bottom row first
                return self.rows(handle, self.height - top - count, count)[::-1]

            try:
                science_tiff.write(folder, self.width, self.height, shown,
                                   strip_rows=max(1, STRIP_BYTES // (8 * self.width)))
            finally:
                self.release(handle)
        if self.needs_exact:
            self.write_exact(folder / science.EXACT_NAME)

    def image(self, scaled: Callable[[np.ndarray], np.ndarray] | None = None
              ) -> tuple[pyvips.Image, VirtualTiff]:
        """The plane as a lazy, sequential libvips image (display orientation) and the source it reads
        from (whose `failure` says why a read failed). Each call opens a source of its own. `scaled`: the
        image is the 8-bit picture that function makes of rows of values (`served`, in native order)."""
        from app.tiles.virtual_tiff import VirtualTiff

        source = VirtualTiff(self, scaled)
        picture = pyvips.Image.tiffload_source(source.source, access="sequential")
        return picture, source


class CompressedStrips(FitsStrips):
    """A tile-compressed plane's rows, decompressed band by band (see the module). The display and science
    pyramids read the same rows at about the same time, from two threads: the bands last decompressed
    (`_KEPT` of them, a strip's bytes each) are shared, so that each is decompressed once for both, and one
    astropy file serves every reader, under `_DECOMPRESSING`. `release` closes it when its readers are
    done (it is opened again on the next read)."""

    _KEPT = 4

    @property
    def _state(self) -> dict[str, Any]:
        # a frozen dataclass: what is kept between reads lives in the instance's own dict
        state: dict[str, Any] = self.__dict__.setdefault("_kept", {"file": None, "bands": {}, "memmap": True})
        return state

    def _hdu(self) -> Any:
        """The CompImageHDU (opened on first use; call with `_DECOMPRESSING` held)."""
        from astropy.io import fits

        state = self._state
        if state["file"] is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state["file"] = fits.open(self.path, memmap=state["memmap"], lazy_load_hdus=True)
        return state["file"][self.hdu]

    def release(self, handle: BinaryIO) -> None:
        with _DECOMPRESSING:
            self._close()

    def _close(self) -> None:
        state = self._state
        if state["file"] is not None:
            state["file"].close()
        state["file"] = None
        state["bands"].clear()

    def _unreadable(self, error: Exception) -> FormatError:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return compressed_unreadable(self.path.name, self.hdu, reason)

    @property
    def dtype(self) -> np.dtype[Any]:
        kind = self.__dict__.get("_dtype")
        if kind is None:
            kind = self.__dict__["_dtype"] = self.rows(None, 0, 1).dtype  # type: ignore[arg-type]
        return kind

    @property
    def converted(self) -> bool:
        return True  # the bytes come from astropy, never straight from the file

    def _read(self, first: int, stop: int) -> np.ndarray:
        """FITS rows `first` .. `stop` of the plane, decompressed (call with `_DECOMPRESSING` held)."""
        hdu = self._hdu()
        outer = tuple(int(n) for n in hdu.shape[:-2])
        position = tuple(int(i) for i in np.unravel_index(self.index, outer)) if outer else ()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.array(hdu.section[(*position, slice(first, stop))])
        except ValueError as error:
            if "memmap" not in str(error) or not self._state["memmap"]:
                raise
        # scaled integers (BZERO/BSCALE/BLANK) cannot be read through a memory map
        self._close()
        self._state["memmap"] = False
        return self._read(first, stop)

    def _band(self, start: int) -> tuple[int, np.ndarray]:
        """The band of whole tiles holding FITS row `start`: (its first row, its rows)."""
        state = self._state
        hdu = self._hdu()
        # whole tiles, about a strip's bytes of them: astropy spends time on each tile and each read
        tile_rows = max(1, int(hdu.tile_shape[-2]))
        band = tile_rows * max(1, STRIP_BYTES // (8 * self.width * tile_rows))
        first = start - start % band
        kept = state["bands"].get(first)
        if kept is None:
            kept = self._read(first, first + band)
            if len(state["bands"]) >= self._KEPT:
                del state["bands"][next(iter(state["bands"]))]  # the oldest
            state["bands"][first] = kept
        return first, kept

    def rows(self, handle: BinaryIO, first: int, count: int) -> np.ndarray:
        parts = []
        row = first
        try:
            with _DECOMPRESSING:
                while row < first + count:
                    start, band = self._band(row)
                    stop = min(first + count, start + len(band))
                    parts.append(band[row - start:stop - start])
                    row = stop
        except MemoryError:
            raise
        except Exception as error:  # astropy raises many kinds on corrupt compressed tiles
            raise self._unreadable(error) from None
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        kind = data.dtype.newbyteorder("=")
        if kind.kind in "iu" and kind.itemsize == 8:
            kind = np.dtype("f8")  # as `FitsReader.pixels` takes 64-bit integers
        return data.astype(kind)

    def sample(self, step: int) -> np.ndarray:
        if step > 1:
            with _DECOMPRESSING:
                tile_rows = int(self._hdu().tile_shape[-2])
            if tile_rows == 1:  # a tile a row (fpack's way): only the rows sampled are decompressed
                return self._sample_rows(step)
        parts = []
        rows = max(1, STRIP_BYTES // (8 * self.width))
        for top in range(0, self.height, rows):  # whole strips: a band is decompressed once
            count = min(rows, self.height - top)
            strip = self.rows(None, self.height - top - count, count)[::-1]  # type: ignore[arg-type]
            chosen = np.arange(top, top + count)
            parts.append(strip[(chosen % step) == 0, ::step].astype(np.float64).ravel())
        values = np.concatenate(parts) if parts else np.zeros(0)
        return values[np.isfinite(values)]

    @contextlib.contextmanager
    def _opened(self) -> Iterator[Any]:
        with _DECOMPRESSING:
            tile_rows = int(self._hdu().tile_shape[-2])

        def one(fits_row: int) -> np.ndarray:
            if tile_rows > 1:  # whole bands, each decompressed once for the rows taken from it
                return np.asarray(self.rows(None, fits_row, 1)[0])  # type: ignore[arg-type]
            try:  # a tile a row (fpack's way): only the rows taken are decompressed
                with _DECOMPRESSING:
                    return np.asarray(self._read(fits_row, fits_row + 1)[0])
            except MemoryError:
                raise
            except Exception as error:  # astropy raises many kinds on corrupt compressed tiles
                raise self._unreadable(error) from None

        try:
            yield one
        finally:
            self.release(None)  # type: ignore[arg-type]

    def _sample_rows(self, step: int) -> np.ndarray:
        """`sample` of an image compressed a row a tile: each sampled row read alone."""
        parts = []
        try:
            with _DECOMPRESSING:
                for top in range(0, self.height, step):
                    fits_row = self.height - 1 - top  # display row `top`
                    parts.append(self._read(fits_row, fits_row + 1)[0, ::step].astype(np.float64))
        except MemoryError:
            raise
        except Exception as error:  # astropy raises many kinds on corrupt compressed tiles
            raise self._unreadable(error) from None
        values = np.concatenate(parts) if parts else np.zeros(0)
        return values[np.isfinite(values)]
