"""Reading and tiling one file, in a pool process: every plane's Deep Zoom pyramid and science pyramid
written into a private work folder (app/ingest/pipeline.py moves them into place and catalogs them), after
a check that the disk has room for them."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from app.exceptions import DiskFull, FormatError, ImageXError
from app.ingest.room import check_room
from app.sky.coverage import with_coverage
from app.tiles import adaptive, histogram, pyramid, science
from app.tiles.scaling import Applied, Scaling, display, finite_values, row_scaling, sample, sample_step
from app.tiles.stream import FitsStrips

# a FITS plane whose pixels take more bytes than this in the file is streamed (app/tiles/stream.py); a
# smaller one is read whole through astropy's memory map, which costs a small file less (two libvips
# sources and their reading threads cost about 8 ms a plane)
STREAM_ABOVE = 16 << 20
# planes of at most this many pixels are written by libvips with one thread (`_threads_for`)
SINGLE_THREADED_UP_TO = 1 << 20
AHE_SCRATCH = ".ahisteq.raw"  # in a plane's work folder while its adaptively equalised picture is tiled


def _no_space(error: BaseException) -> bool:
    """libvips reports a full disk in its error text; Python as ENOSPC (or EDQUOT, a quota's limit)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(getattr(error, "detail", "") or error)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _render_plane(reader: Any, plane: Any, chosen: Scaling, folder: Path, quality: int,
                  measure: bool = True) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """Build one plane's pyramids in `folder`: the levels, the scaling applied and the histogram of its
    values (`app.tiles.histogram`), counted on the sample the scaling measures its limits on (for a
    single-band image the very same one, taken once). Adaptive histogram equalisation (`ahisteq`) is
    applied as the dynamic tiles of the image's default display apply it: to the values the science
    pyramid keeps, with the same cells (app/tiles/adaptive.py). `measure=False`: the scaling is manual
    and measured already (a harvested image's); no sample is taken and no histogram counted (None)."""
    strips = FitsStrips.of(reader, plane)
    if strips is not None and chosen.stretch != "ahisteq":
        if strips.raw_bytes > STREAM_ABOVE:
            return _render_streamed(strips, chosen, folder, quality, measure)
        if not (strips.dtype.kind in "iu" and strips.dtype.itemsize == 8):  # libvips takes no 64-bit integers
            return _render_read(strips, chosen, folder, quality, measure)
    pixels = reader.pixels(plane)
    # the values the science pyramid keeps (a colour raster's grey levels), sampled once for both
    values = sample(science.values(pixels) if pixels.bands > 1 else pixels) if measure else None
    shown = science.values(pixels) if chosen.stretch == "ahisteq" and pixels.bands > 1 else pixels
    # a small plane's sample is every pixel: when all are finite, none needs the bad-pixel mask
    whole = shown is pixels and sample_step(pixels.width, pixels.height) == 1
    picture, applied = display(shown, chosen, values if shown.bands == 1 else None, whole=whole)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / AHE_SCRATCH
    # the original values beside the DZI, for dynamic tiles and the pixel readout: written by a second
    # thread while this one writes the DZI (libvips releases the GIL), which hides most of its cost
    with _threads_for(pixels.width * pixels.height), ThreadPoolExecutor(1) as writer:
        # a plain FITS plane's from its rows, as a streamed plane's (the same file, without libvips)
        written = writer.submit(strips.write_science, folder) if strips is not None and pixels.bands == 1 \
            else writer.submit(science.write, pixels, folder)
        try:
            if applied.stretch == "ahisteq":
                picture = adaptive.equalised_picture(picture, sample_step(picture.width, picture.height),
                                                     scratch)
            if plane.invert:
                # MONOCHROME1 (DICOM): low values are white. Only the 8-bit picture is inverted, after the
                # scaling, so the science values, the readout and the limits recorded stay the file's own
                picture = picture.invert()
            levels = pyramid.build(picture, folder, quality=quality)
        finally:
            written.result()
            del picture  # the scratch file's mapping is closed with it
            scratch.unlink(missing_ok=True)
    return levels, applied, histogram.of(values) if values is not None else None


@contextmanager
def _threads_for(pixels: int) -> Iterator[None]:
    """libvips writes the pyramids of a plane of at most SINGLE_THREADED_UP_TO pixels with one thread
    each: its thread pools cost such a plane more CPU than they save (the pool's other processes keep the
    other cores busy); a larger one keeps libvips' own threads. A pool process runs one call at a time."""
    import pyvips

    if pixels > SINGLE_THREADED_UP_TO:
        yield
        return
    threads = pyvips.concurrency_get()
    pyvips.concurrency_set(1)
    try:
        yield
    finally:
        pyvips.concurrency_set(threads)


def _render_streamed(strips: FitsStrips, chosen: Scaling, folder: Path, quality: int,
                     measure: bool = True) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """`_render_plane` of a plain FITS plane, streamed (app/tiles/stream.py): the sample read row by row,
    the display and science pyramids each pulled through a source of their own, strip by strip, so that
    memory stays flat whatever the image's size. (Adaptive equalisation reads its picture twice, so it
    keeps the whole-image path.)"""

    values = strips.sample(sample_step(strips.width, strips.height)) if measure else None
    picture, source, applied = streamed_picture(strips, chosen, values)
    try:
        with source.reading():
            folder.mkdir(parents=True, exist_ok=True)
            with ThreadPoolExecutor(1) as writer:
                written = writer.submit(strips.write_science, folder)
                try:
                    levels = pyramid.build(picture, folder, quality=quality)
                except Exception:
                    written.exception()  # the other writer done before its files are removed with the folder
                    raise
                written.result()
    finally:
        del picture
        source.close()
    return levels, applied, histogram.of(values) if values is not None else None


def _render_read(strips: FitsStrips, chosen: Scaling, folder: Path, quality: int,
                 measure: bool = True) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    """`_render_plane` of a small plain FITS plane by NumPy alone: its rows read at once, the sample taken
    from them, the 8-bit picture made of them as `display` makes it (`Mapping.rows`: the same grey levels),
    tiled by `pyramid.build_array`, and the science pyramid written from the same rows. libvips' pipelines
    and threads cost a small plane more than its work."""
    data = strips.whole()
    step = sample_step(strips.width, strips.height)

    def sampled() -> np.ndarray:  # `scaling.sample`
        return finite_values(data[::step, ::step])

    values = sampled() if measure else None
    scaled, applied = row_scaling(data.dtype, chosen, values, sampled)
    picture = data if scaled is None else scaled(data)
    levels = pyramid.build_array(picture, folder, quality=quality)
    strips.write_science(folder, data)
    return levels, applied, histogram.of(values) if values is not None else None


def streamed_picture(strips: FitsStrips, chosen: Scaling, values: np.ndarray | None
                     ) -> tuple[Any, Any, Applied]:
    """The 8-bit picture `display` makes of a streamed plane (lazy, sequential), the source it reads
    (`VirtualTiff`) and what was applied. `values`: the plane's sample, when it was taken already. NumPy
    makes the grey levels as the rows are read, the very ones libvips' scaling gives (`Mapping.rows`): its
    TIFF loader then reads a byte a pixel, not four, and applies no scaling of its own."""
    step = sample_step(strips.width, strips.height)
    scaled, applied = row_scaling(strips.served, chosen, values, lambda: strips.sample(step))
    picture, source = strips.image(scaled)
    return picture, source, applied


_T = TypeVar("_T")
UNZIPPED = ".unzipped"  # in a work folder: a large gzipped file's decompressed copy, while it is read


@contextmanager
def unzipping(reader: Any, work: Path) -> Iterator[None]:
    """Remove the decompressed copy that `unzip` may make, once the reader is done with it."""
    try:
        yield
    finally:
        reader.close()
        shutil.rmtree(work / UNZIPPED, ignore_errors=True)


def unzip(reader: Any, work: Path) -> None:
    """A large gzipped file read from a decompressed copy in `work`, so that its planes stream strip by
    strip (`Reader.unzip`); a full disk is reported as the pyramids' would be, with nothing kept."""
    try:
        reader.unzip(work / UNZIPPED)
    except OSError as error:
        if not _no_space(error):
            raise
        shutil.rmtree(work / UNZIPPED, ignore_errors=True)
        raise DiskFull(f"the disk of the data folder is full ({shutil.disk_usage(work).free:,} bytes free): "
                       "the decompressed copy of this gzipped file could not be written; nothing was kept") \
            from None


def _render_failure(error: BaseException, source: Path, hdu: int | None, work: str) -> Exception:
    """What a failed plane is reported as: a full disk, or pixel data libvips could not decode."""
    if _no_space(error):
        free = shutil.disk_usage(work).free
        place = f"HDU {hdu}" if hdu is not None else "the image"
        return DiskFull(f"the disk of the data folder is full ({free:,} bytes free): the pyramids of {place} "
                        "could not be written; nothing was kept")
    if isinstance(error, OSError):
        return OSError(error.errno, error.strerror, error.filename)
    detail = str(getattr(error, "detail", "") or error).strip().splitlines()
    if any("out of memory" in line or "Cannot allocate memory" in line for line in detail):
        return MemoryError()  # libvips could not allocate: the job's memory limit, not the file
    where = f"HDU {hdu}: " if hdu is not None else ""  # rasters have no HDUs
    return FormatError(f"{source.name}: {where}pixel data cannot be decoded: "
                       f"{detail[-1][:300] if detail else 'libvips error'}")


@contextmanager
def _opened(path: str, work: str, scaling: dict[str, Any], max_pixels: int, options: dict[str, Any] | None,
            *, with_sky: bool = True) -> Iterator[tuple[Any, list[Any], Scaling]]:
    """The open reader of `path` (taking the site options its class takes), its planes and the job's
    scaling checked; a decompressed copy `unzip` made in `work` is removed when the reader is done.
    `with_sky=False`: no sky is computed for the planes (a harvest catalogued it)."""
    from app.formats import sniff

    reader_class = sniff(Path(path))
    try:
        chosen = Scaling.from_dict(scaling)
    except (TypeError, ValueError) as error:
        raise ImageXError(f"the scaling chosen for this job cannot be used: {error}") from None
    # a FITS file is read without astropy where its headers and pixels are plain (`FitsReader(deferred)`)
    given = {"deferred": True, **(options or {})}
    taken = {name: value for name, value in given.items() if name in reader_class.OPTIONS}
    with reader_class(Path(path), max_pixels=max_pixels, **taken) as reader, unzipping(reader, Path(work)):
        reader.with_sky = with_sky
        yield reader, list(reader.planes()), chosen


def _readied(reader: Any, planes: list[Any], work: str, adaptive_scratch: bool) -> None:
    """`check_room` for the planes' pyramids, then the decompressed copy of a large gzipped file."""
    check_room(planes, Path(work), adaptive_scratch, reader.unzip_bytes())
    unzip(reader, Path(work))


def _built(build: Callable[..., _T], reader: Any, plane: Any, shown: Scaling, work: str, quality: int,
           **options: Any) -> _T:
    """`build` (`_render_plane` or `_harvest_plane`) of one plane into `work/<hdu>`, a libvips or file
    error reported as `_render_failure` says: raised outside the handler, with no traceback of the failed
    writers held (`_failed`)."""
    import pyvips

    failure: Exception | None = None
    try:
        return build(reader, plane, shown, Path(work) / str(plane.hdu), quality, **options)
    except (pyvips.Error, OSError) as error:
        failure = _failed(error, reader.path, reader, plane, work)
    raise failure


def _shown(plane: Any, chosen: Scaling) -> Scaling:
    """The scaling a plane is shown with: its own window (DICOM's VOI window) stands in for `auto`."""
    if plane.window is not None and chosen.interval == "auto":
        return Scaling(interval="manual", low=plane.window[0], high=plane.window[1],
                       stretch="linear" if chosen.stretch == "auto" else chosen.stretch)
    return chosen


def _failed(error: BaseException, source: Path, reader: Any, plane: Any, work: str) -> Exception:
    failure = _render_failure(error, source, plane.hdu if reader.format == "fits" else None, work)
    # raised by the caller with no traceback of the failed writers held: libvips closes the files they had
    # open (else a removed work file stays open, its room never given back)
    gc.collect()
    return failure


def _entry(reader: Any, plane: Any, scaling: dict[str, Any], shown: Scaling, chosen: Scaling, applied: Any,
           counted: dict[str, Any], levels: dict[str, Any]) -> dict[str, Any]:
    """A plane's catalog data (`_described`) and its display record."""
    entry = _described(reader, plane)
    entry["display"] = _display_record(plane, scaling, shown, chosen, applied, counted, levels)
    return entry


def _display_record(plane: Any, scaling: dict[str, Any], shown: Scaling, chosen: Scaling, applied: Any,
                    counted: dict[str, Any], levels: dict[str, Any]) -> dict[str, Any]:
    """How a plane's picture was made: the scaling applied, its pyramid's levels, its histogram, and the
    plane's own window, inversion or the stored scaling that chose it."""
    record = {**applied.to_dict(), **levels, "histogram": counted}
    if plane.window is not None and shown is not chosen:
        record["window"] = list(plane.window)
    if plane.invert:
        record["inverted"] = True
    if scaling.get("name"):  # a stored scaling, fixed for a whole batch
        record["scaling"] = str(scaling["name"])
    return record


def _described(reader: Any, plane: Any, *, coverage: bool = True) -> dict[str, Any]:
    """A plane's catalog data but its display: its fields (but for the reader's WCS), its format, and its
    sky with the coverage (`coverage=False`: its corners alone)."""
    entry = {item.name: getattr(plane, item.name) for item in fields(plane) if item.name != "celestial"}
    if coverage:
        entry["sky"] = _covered(plane)
    entry["format"] = reader.format
    return entry


def _covered(plane: Any) -> dict[str, Any] | None:
    """A plane's sky with its coverage: the footprint from the pixels through the WCS (app/sky/coverage.py),
    a MOC, for cone search; computed in the same pool call as the pixels."""
    if plane.sky is not None or any(str(key).startswith("CTYPE") for key in plane.header):
        return with_coverage(plane.sky, plane.header, plane.width, plane.height, plane.celestial)
    return plane.sky


def catalogue_files(paths: list[str], max_pixels: int, largest: int) -> list[dict[str, Any] | None]:
    """In a pool process, the first phase of a batch catalogued from its headers (app/ingest/catalogue.py):
    for each plain FITS file of at most `largest` bytes, its SHA-256, its size, every plane's catalog
    data without its display (`_described`: headers and sky, its coverage left to `tile_file`: it would
    cost a third more) and, under `cells`, each plane's cone-search cells (found here, where astropy is
    loaded already: the command need not import it); no pixel is read. None for a file that is anything
    else, or that cannot be read this way (the queue reads it as any other file and says what is wrong
    with it)."""
    from app.formats.fits import FitsReader
    from app.store.footprint import footprint_cells

    out: list[dict[str, Any] | None] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                # read at its size (a buffer of `largest` bytes would cost more than the reading)
                content = handle.read(size + 1) if size <= largest else b""
            if len(content) != size or not content.startswith(b"SIMPLE  ="):
                out.append(None)  # larger than `largest`, changed as it was read, gzipped, or not FITS
                continue
            with FitsReader(Path(path), max_pixels=max_pixels, deferred=True) as reader:
                planes = [_described(reader, plane, coverage=False) for plane in reader.planes()]
            checksum = hashlib.sha256(content).hexdigest()
            out.append({"sha256": checksum, "size": len(content), "planes": planes,
                        "cells": [footprint_cells(plane["sky"]) for plane in planes]})
        except Exception:  # anything at all: the file is read again by its job, which says what is wrong
            out.append(None)
    return out


def render_file(path: str, work: str, scaling: dict[str, Any], max_pixels: int,
                quality: int, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """In a pool process: read every plane of `path` and build its pyramids (the 8-bit DZI and the
    science pyramid) in `work/<hdu>/`. `options`: site settings for the readers that take them
    (`Reader.OPTIONS`). A plane's own window (DICOM's VOI window) stands in for the `auto` interval.
    Returns the planes' catalog data, each plane's sky with its coverage. Raises FormatError for anything
    wrong with the file."""
    with _opened(path, work, scaling, max_pixels, options) as (reader, planes, chosen):
        _readied(reader, planes, work, chosen.stretch == "ahisteq")
        return _rendered(reader, planes, work, scaling, chosen, quality)


def _rendered(reader: Any, planes: list[Any], work: str, scaling: dict[str, Any], chosen: Scaling,
              quality: int) -> list[dict[str, Any]]:
    """`render_file` of an open reader: every plane's pyramids and catalog data."""
    out: list[dict[str, Any]] = []
    for plane in planes:
        shown = _shown(plane, chosen)
        levels, applied, counted = _built(_render_plane, reader, plane, shown, work, quality)
        assert counted is not None  # measured
        out.append(_entry(reader, plane, scaling, shown, chosen, applied, counted, levels))
    return out


def harvest_file(path: str, work: str, scaling: dict[str, Any], max_pixels: int, quality: int,
                 options: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """In a pool process, the first phase of a two-phase ingest (app/ingest/pipeline.py): every plane's
    catalog data as `render_file` gives it (the same scaling, histogram, sky and coverage; the display's
    `width`, `height` and `levels` those of the pyramid to come, and `tiling` set), and its thumbnail in
    `work/<hdu>/thumb.jpeg`; no pyramid. A file of at most `options["two_phase_above"]` pixels is tiled
    at once instead (`render_file`: no `tiling`), which costs less than two phases. None when the file is
    one slice of a series (its pyramids join the series' image: it is ingested in one phase). The check
    for room counts the pyramids to come: a file the disk cannot take is refused before it is
    catalogued."""
    out: list[dict[str, Any]] = []
    with _opened(path, work, scaling, max_pixels, options) as (reader, planes, chosen):
        if any(plane.series for plane in planes):
            return None
        small = sum(plane.width * plane.height for plane in planes) <= int((options or {}).get(
            "two_phase_above", 0))
        _readied(reader, planes, work, False)
        if small:
            return _rendered(reader, planes, work, scaling, chosen, quality)
        for plane in planes:
            shown = _shown(plane, chosen)
            applied, counted = _built(_harvest_plane, reader, plane, shown, work, quality)
            levels = {"width": plane.width, "height": plane.height,
                      "levels": pyramid.max_level(plane.width, plane.height) + 1, "tiling": True}
            out.append(_entry(reader, plane, scaling, shown, chosen, applied, counted, levels))
    return out


def _harvest_plane(reader: Any, plane: Any, chosen: Scaling, folder: Path,
                   quality: int) -> tuple[Any, dict[str, Any]]:
    """A plane's scaling and histogram, measured as `_render_plane` measures them, and its thumbnail (the
    picture at the level of the pyramid that fits in one tile) in `folder`. Of a large FITS plane only the
    sample's rows and a strided sample of rows for the thumbnail (`FitsStrips.reduced`) are read."""
    import pyvips

    folder.mkdir(parents=True, exist_ok=True)
    strips = FitsStrips.of(reader, plane)
    if strips is not None and strips.raw_bytes > STREAM_ABOVE:
        # the sample and the thumbnail's rows are all that is read: a small part of a large plane
        values = strips.sample(sample_step(strips.width, strips.height))
        level = pyramid.one_tile_level(strips.width, strips.height)
        factor = 2 ** (pyramid.max_level(strips.width, strips.height) - level)
        small = pyvips.Image.new_from_array(strips.reduced(factor))
        picture, applied = display(small, chosen, values)
        pyramid.thumbnail(picture, folder, quality=quality)
        return applied, histogram.of(values)
    pixels = reader.pixels(plane)
    values = sample(science.values(pixels) if pixels.bands > 1 else pixels)
    picture, applied = display(pixels, chosen, values if pixels.bands == 1 else None)
    if plane.invert:
        picture = picture.invert()
    pyramid.thumbnail(picture, folder, quality=quality)
    return applied, histogram.of(values)


def tile_file(path: str, work: str, scaling: dict[str, Any], max_pixels: int, quality: int,
              options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """In a pool process, the second phase of a two-phase ingest: the pyramids of every plane of `path` in
    `work/<hdu>/`, built as `render_file` builds them (the same scaling gives the same pixels). Returns,
    plane by plane, `hdu`, `width` and `height`: the pipeline checks that they are still those it
    catalogued. `scaling["measured"]`, by HDU: the manual scaling each plane's harvest measured (its
    limits, and a stretch that needs nothing else), applied without measuring it again. A plane without
    one (catalogued from its header alone: app/ingest/catalogue.py) is measured as `render_file` measures
    it, and its `display` record returned too; with `scaling["sky"]`, its `sky` with its coverage too, and
    that sky's cone-search `cells`."""
    from app.store.footprint import footprint_cells

    measured = scaling.get("measured") or {}
    sky = bool(scaling.get("sky"))  # else the sky was catalogued by the harvest
    out: list[dict[str, Any]] = []
    with _opened(path, work, scaling, max_pixels, options, with_sky=sky) as (reader, planes, chosen):
        _readied(reader, planes, work, chosen.stretch == "ahisteq")
        for plane in planes:
            fixed = measured.get(str(plane.hdu))
            shown = Scaling.from_dict(fixed) if fixed else _shown(plane, chosen)
            levels, applied, counted = _built(_render_plane, reader, plane, shown, work, quality,
                                              measure=not fixed)
            out.append({"hdu": plane.hdu, "width": plane.width, "height": plane.height})
            if counted is not None:
                out[-1]["display"] = _display_record(plane, scaling, shown, chosen, applied, counted, levels)
            if sky:
                out[-1]["sky"] = _covered(plane)
                out[-1]["cells"] = footprint_cells(out[-1]["sky"])  # found here, where astropy is loaded
    return out


def tile_files(items: list[tuple[str, str, dict[str, Any], int]], max_pixels: int, quality: int,
               options: dict[str, Any] | None = None) -> list[list[dict[str, Any]] | None]:
    """In a pool process, the second phase of several files catalogued from their headers
    (app/ingest/catalogue.py, `tile_catalogued`): `tile_file` of each (path, work folder, scaling) whose
    size is still the one given. None for a file that changed or failed (its work folder removed): its
    job builds its pyramids alone, and says what is wrong."""
    out: list[list[dict[str, Any]] | None] = []
    for path, work, scaling, size in items:
        try:
            if os.stat(path).st_size != size:
                raise ValueError("changed since it was catalogued")
            out.append(tile_file(path, work, scaling, max_pixels, quality, options))
        except Exception:  # anything at all: the job alone says what
            shutil.rmtree(work, ignore_errors=True)
            out.append(None)
    return out
