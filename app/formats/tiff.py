"""TIFF files that carry scientific metadata, read with tifffile: what kind a TIFF is (GeoTIFF, OME-TIFF,
ImageJ hyperstack or plain), the parts the TIFF readers share, and the microscopy reader (OME-TIFF and
ImageJ). Plain TIFFs stay with the libvips RasterReader; GeoTIFFs are read in `app.formats.geotiff`."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.store.records import HeaderValue

SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
GEO_TAGS = (33550, 33922, 34264, 34735)  # ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeys
TEXT_CAP = 2000
_BITPIX = {"uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32, "float32": -32,
           "float64": -64}
# Tags that locate the file's bytes or repeat what other fields say: no use in a catalog.
_SKIPPED_TAGS = {"StripOffsets", "StripByteCounts", "TileOffsets", "TileByteCounts", "JPEGTables",
                 "ImageDescription", "ICCProfile", "XMP", "IPTCNAA", "Photoshop", "ExifTag", "GPSTag",
                 "SubIFDs", "ModelPixelScaleTag", "ModelTiepointTag", "ModelTransformationTag",
                 "GeoKeyDirectoryTag", "GeoDoubleParamsTag", "GeoAsciiParamsTag", "IJMetadata",
                 "IJMetadataByteCounts", "GDAL_METADATA", "ColorMap", "TransferFunction"}
_AXES = {"C": "channels", "Z": "z-slices", "T": "time points"}
_MICRONS = {"micron", "microns", "µm", "μm", "\\u00b5m", "um", "micrometer", "micrometre"}


def kind(path: Path, head: bytes) -> str:
    """'geotiff', 'ome-tiff', 'imagej-tiff', or '' (not a TIFF, a plain one, or one tifffile cannot open:
    those go to the RasterReader, whose messages say what is wrong)."""
    if not head.startswith(SIGNATURES):
        return ""
    try:
        stat = path.stat()
    except OSError:
        return ""
    return _kind(str(path), stat.st_size, stat.st_mtime_ns)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """tifffile logs a warning for every damaged tag it skips: the readers report damage themselves."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=64)
def _kind(path: str, _size: int, _mtime: int) -> str:
    # cached by size and time: sniff() asks each TIFF reader in turn; only the first IFD is parsed
    import tifffile

    try:
        with _quiet(), tifffile.TiffFile(path, _multifile=False) as tif:
            return kind_of(tif)
    except Exception:  # a corrupt TIFF: the RasterReader gives its clear messages
        return ""


def kind_of(tif: Any) -> str:
    """The kind of an open tifffile.TiffFile, told by the tags and description of its first page."""
    page = tif.pages.first
    if any(code in page.tags for code in GEO_TAGS):
        return "geotiff"
    description = str(getattr(page, "description", "") or "")
    if description.lstrip().startswith("<?xml") and "OME" in description[:4000]:
        return "ome-tiff"
    if description.startswith("ImageJ=") or tif.is_imagej:
        return "imagej-tiff"
    return ""


def open_tiff(path: Path) -> Any:
    """An open tifffile.TiffFile; a precise message when tifffile cannot read the file's structure."""
    import tifffile

    try:
        with _quiet():
            tif = tifffile.TiffFile(str(path), _multifile=False)
            page = tif.pages.first
            _ = page.shape
    except MemoryError:
        raise
    except Exception as error:
        raise FormatError(f"{path.name}: not a readable TIFF file: {reason(error)}") from None
    size = path.stat().st_size
    ends = [int(offset) + int(count) for offset, count in zip(page.dataoffsets, page.databytecounts,
                                                              strict=False) if count]
    if ends and max(ends) > size:
        tif.close()
        raise FormatError(f"{path.name}: the file is cut short: it ends at byte {size:,} but the pixel data "
                          f"of its first image runs to byte {max(ends):,} (truncated copy or download?)")
    return tif


def reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def bitpix(dtype: Any) -> int | None:
    return _BITPIX.get(np.dtype(dtype).name)


def tag_header(page: Any) -> dict[str, HeaderValue]:
    """The page's ordinary TIFF tags by name, as the RasterReader records libvips' fields: numbers and
    short text; rationals as numbers; short lists of numbers as text."""
    header: dict[str, HeaderValue] = {}
    for tag in page.tags.values():
        name = str(tag.name)
        if name in _SKIPPED_TAGS or (name.isdigit() and int(name) in GEO_TAGS):
            continue
        value = tag.value
        if hasattr(value, "name") and hasattr(value, "value"):  # an enum: its name says what it means
            value = str(value.name)
        if isinstance(value, tuple) and len(value) == 2 and name.endswith("Resolution"):
            value = value[0] / value[1] if value[1] else None
        if isinstance(value, bytes):
            value = value.decode("latin-1").rstrip("\x00")
        if isinstance(value, tuple | list) and 0 < len(value) <= 16 and all(
                isinstance(item, int | float) for item in value):
            value = " ".join(str(item) for item in value)
        if isinstance(value, bool | int | float):
            header[name] = value
        elif isinstance(value, str) and value.isprintable() and len(value) <= TEXT_CAP:
            header[name] = value
    return header


def dimensions_note(axes: str, shape: tuple[int, ...]) -> str:
    """'3 channels x 5 z-slices x 2 time points', or '' for a single 2-D plane."""
    sizes = [(axis, size) for axis, size in zip(axes, shape, strict=False) if axis not in "YXS" and size > 1]
    sizes.sort(key=lambda item: "CZT".find(item[0]) % 4)  # channels, z, time, then any other axis
    parts = [f"{size} {_AXES.get(axis, f'planes along {axis}')}" for axis, size in sizes]
    return " x ".join(parts) if parts else ""


def pages_note(path: Path, pages: int) -> str:
    """What a plain TIFF of `pages` pages (libvips' count) shows: 'N pages; page 1 shown', or, when the
    other pages are reduced-resolution copies of the first (a pyramid), that the full resolution is read."""
    import tifffile

    try:
        with _quiet(), tifffile.TiffFile(str(path), _multifile=False) as tif:
            reduced = sum(1 for page in tif.pages if int(getattr(page, "subfiletype", 0)) & 1)
            full = len(tif.pages) - reduced
    except Exception:  # libvips counted the pages; tifffile's view is only a refinement
        return f"{pages} pages; page 1 shown"
    if full <= 1 and reduced:
        return f"a pyramid of {reduced + 1} levels; read from the full-resolution level"
    return f"{full} pages; page 1 shown" if full > 1 else ""


def lazy_page(path: Path, index: int, page: Any) -> pyvips.Image:
    """Page `index` as a libvips image that decodes tiles or strips as the pyramid builder asks for them, so
    a large (tiled, pyramidal) image is never held whole in memory. When libvips cannot decode the page
    (a compression libtiff lacks; bands stored as separate planes, which libvips misreads or refuses),
    tifffile decodes it into memory: `check_size` bounds that."""
    # a frame of a series (tifffile's TiffFrame) has its pixels but takes its layout from its key page
    layout = getattr(page, "keyframe", None) or page
    separate = int(layout.samplesperpixel) > 1 and str(getattr(layout.planarconfig, "name", "")) == "SEPARATE"
    if not separate:
        try:
            image = pyvips.Image.tiffload(str(path), page=index, fail_on="error")
            if (image.width, image.height) == (layout.imagewidth, layout.imagelength):
                return image
        except pyvips.Error:
            pass
    try:
        array = np.asarray(page.asarray())
    except MemoryError:
        raise
    except Exception as error:
        raise FormatError(f"{path.name}: page {index + 1}: pixel data cannot be decoded: {reason(error)}") \
            from None
    if (array.dtype.kind in "iu" and array.dtype.itemsize == 8) or array.dtype.kind == "b":
        array = array.astype(np.float64)
    if separate and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise FormatError(f"{path.name}: page {index + 1}: unexpected pixel layout {array.shape}")
    return pyvips.Image.new_from_array(array)


def shown_bands(image: pyvips.Image, rgb: bool) -> tuple[pyvips.Image, str]:
    """The bands to display, with a note when some are left out. A colour image (photometric RGB, perhaps
    with alpha) stays in colour, its alpha flattened onto black; any other image with several bands shows
    its first band."""
    if rgb and image.bands in (3, 4):
        return (image.flatten(background=0) if image.bands == 4 else image), ""
    if image.bands == 1:
        return image, ""
    return image[0], f"{image.bands} bands; band 1 shown"


class MicroscopyTiffReader(Reader):
    """OME-TIFF and ImageJ hyperstacks: the first 2-D plane of the first image, its physical pixel size and
    the microscope's metadata."""

    format = "ome-tiff"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return False  # the OME-XML or ImageJ description may lie anywhere in the file: see claims

    @classmethod
    def claims(cls, path: Path, head: bytes) -> bool:
        return kind(path, head) in {"ome-tiff", "imagej-tiff"}

    def __init__(self, path: Path, *, max_pixels: int) -> None:
        super().__init__(path, max_pixels=max_pixels)
        self._tif = open_tiff(path)
        self.format = "ome-tiff" if kind_of(self._tif) == "ome-tiff" else "imagej-tiff"
        try:
            series = self._tif.series[0]
            level = series.levels[0]
            self._page = level.pages[0] if level.pages else self._tif.pages.first
            self._series = series
            if self._page is None or not hasattr(self._page, "index"):
                raise ValueError("its first plane is not in this file (a multi-file OME-TIFF?)")
        except Exception as error:
            self._tif.close()
            raise FormatError(f"{path.name}: the images of this {self.format.upper()} cannot be found: "
                              f"{reason(error)}") from None

    def close(self) -> None:
        self._tif.close()

    def planes(self) -> list[Plane]:
        page, series = self._page, self._series
        width, height = int(page.imagewidth), int(page.imagelength)
        check_size(self.path, "the first plane", width, height, self.max_pixels)
        header: dict[str, HeaderValue] = {"WIDTH": width, "HEIGHT": height,
                                          "BANDS": int(page.samplesperpixel),
                                          "DTYPE": np.dtype(page.dtype).name, "AXES": str(series.axes),
                                          "SHAPE": " ".join(str(n) for n in series.shape)}
        header.update(tag_header(page))
        comments: dict[str, str] = {}
        notes = []
        if self.format == "ome-tiff":
            name = self._ome(header, comments)
        else:
            name = self._imagej(header, comments, page)
        if "OMEError" in header:
            notes.append(f"{header['OMEError']}: no OME metadata")
        notes.append(dimensions_note(str(series.axes), tuple(series.shape)))
        if len(self._tif.series) > 1:
            notes.append(f"{len(self._tif.series)} images in the file; the first shown")
        if len(series.levels) > 1:
            notes.append(f"a pyramid of {len(series.levels)} levels; read from the full-resolution level")
        if int(page.samplesperpixel) > 1 and not self._rgb():
            notes.append(f"{page.samplesperpixel} bands; band 1 shown")
        return [Plane(hdu=0, name=name or self.path.name, width=width, height=height,
                      bitpix=bitpix(page.dtype), header=header, comments=comments,
                      note="; ".join(note for note in notes if note), planes=self._planes())]

    def _plane_pages(self) -> list[Any]:
        """The full-resolution pages of the first image, one per 2-D plane in the file's order."""
        pages = list(self._series.levels[0].pages)
        if len(pages) < 2 or any(page is None or not hasattr(page, "index") for page in pages):
            return [self._page]
        return pages

    def _planes(self) -> dict[str, Any]:
        """Channels, z-slices and time points as planes, each labelled by its place (`C 2, Z 3`), in the
        order the file stores them."""
        pages = self._plane_pages()
        axes = [(axis, int(size)) for axis, size in zip(str(self._series.axes), self._series.shape,
                                                         strict=False) if axis not in "YXS"]
        if len(pages) < 2 or math.prod(size for _, size in axes) != len(pages):
            return {}
        shape = tuple(size for _, size in axes)
        labels = [", ".join(f"{axis} {i + 1}" for (axis, size), i in zip(axes, place, strict=True)
                            if size > 1) for place in np.ndindex(shape)]
        return {"count": len(pages), "axis": "".join(axis for axis, size in axes if size > 1), "unit": "",
                "values": None, "labels": labels}

    def _rgb(self) -> bool:
        return str(getattr(self._page.photometric, "name", "")) == "RGB"

    def _ome(self, header: dict[str, HeaderValue], comments: dict[str, str]) -> str:
        """Harvest the first image's Pixels, channels, objective and instrument from the OME-XML."""
        try:
            # expat >= 2.4 bounds entity expansion and ElementTree resolves no external entities
            root = ElementTree.fromstring(str(self._tif.pages.first.description))  # noqa: S314
        except ElementTree.ParseError as error:
            header["OMEError"] = f"the OME-XML cannot be parsed: {error}"[:TEXT_CAP]
            return ""
        ns = {"ome": root.tag[1:].split("}")[0]} if root.tag.startswith("{") else {}
        prefix = "ome:" if ns else ""
        image = root.find(f"{prefix}Image", ns)
        if image is None:
            return ""
        for attribute in ("Name", "ID"):
            if image.get(attribute):
                header[f"Image{attribute}"] = image.get(attribute, "")[:TEXT_CAP]
        date = image.find(f"{prefix}AcquisitionDate", ns)
        if date is not None and date.text:
            header["AcquisitionDate"] = date.text.strip()[:80]
        pixels = image.find(f"{prefix}Pixels", ns)
        if pixels is not None:
            for attribute, value in pixels.attrib.items():
                named = f"Pixels{attribute}" if attribute in {"ID", "Type"} else attribute
                header[named] = _number(value)
            if "PhysicalSizeX" in header:
                header.setdefault("PhysicalSizeXUnit", "um")
                comments["PhysicalSizeX"] = "pixel width, from the OME-XML Pixels element"
            if "PhysicalSizeY" in header:
                header.setdefault("PhysicalSizeYUnit", "um")
                comments["PhysicalSizeY"] = "pixel height, from the OME-XML Pixels element"
            channels = pixels.findall(f"{prefix}Channel", ns)
            names = [channel.get("Name") or channel.get("ID") or "" for channel in channels]
            if channels:
                header["ChannelCount"] = len(channels)
                header["ChannelNames"] = ", ".join(names)[:TEXT_CAP]
            for index, channel in enumerate(channels[:16]):
                for attribute in ("Name", "EmissionWavelength", "ExcitationWavelength", "Fluor"):
                    if channel.get(attribute):
                        header[f"Channel{index}{attribute}"] = _number(channel.get(attribute, ""))
        objective = root.find(f"{prefix}Instrument/{prefix}Objective", ns)
        if objective is not None:
            for attribute in ("Manufacturer", "Model", "NominalMagnification", "LensNA", "Immersion"):
                if objective.get(attribute):
                    header[f"Objective{attribute}"] = _number(objective.get(attribute, ""))
        microscope = root.find(f"{prefix}Instrument/{prefix}Microscope", ns)
        if microscope is not None:
            for attribute in ("Manufacturer", "Model", "Type"):
                if microscope.get(attribute):
                    header[f"Microscope{attribute}"] = _number(microscope.get(attribute, ""))
        header["OMEImages"] = len(root.findall(f"{prefix}Image", ns))
        return str(header.get("ImageName", ""))

    def _imagej(self, header: dict[str, HeaderValue], comments: dict[str, str], page: Any) -> str:
        """Harvest the ImageJ description's keys, and the calibration: XResolution/YResolution are pixels
        per `unit`, so a pixel measures their inverse."""
        metadata = self._tif.imagej_metadata or {}
        for key, value in metadata.items():
            if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= TEXT_CAP):
                header[f"ImageJ_{key}" if key in header else str(key)] = value
            elif isinstance(value, list | tuple) and key == "Labels":
                header["Labels"] = ", ".join(str(label) for label in value)[:TEXT_CAP]
        unit = str(metadata.get("unit", "")).strip()
        unit = "um" if unit.lower() in _MICRONS else unit
        sizes = []
        for tag_name in ("XResolution", "YResolution"):
            tag = page.tags.get(tag_name)
            pair = tag.value if tag is not None else None
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] and pair[1]:
                sizes.append(pair[1] / pair[0])
        if unit and unit.lower() not in {"pixel", "pixels", "inch"} and sizes and all(
                math.isfinite(size) and size > 0 for size in sizes):
            header["PhysicalSizeX"] = sizes[0]
            header["PhysicalSizeY"] = sizes[-1]
            header["PhysicalSizeXUnit"] = header["PhysicalSizeYUnit"] = unit
            comments["PhysicalSizeX"] = f"{unit} per pixel: 1 / XResolution (ImageJ unit={unit})"
            comments["PhysicalSizeY"] = f"{unit} per pixel: 1 / YResolution (ImageJ unit={unit})"
        return ""

    def pixel_bytes(self) -> int:
        page = self._page
        return int(page.imagewidth) * int(page.imagelength) * int(page.samplesperpixel) * \
            int(np.dtype(page.dtype).itemsize)

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        # the full-resolution level's pages are top-level IFDs (OME puts reduced levels in SubIFDs), which
        # libvips decodes lazily, tile by tile
        pages = self._plane_pages()
        if not 0 <= index < len(pages):
            raise FormatError(f"{self.path.name}: plane {index + 1} asked of an image with {len(pages)}")
        page = pages[index]
        image = lazy_page(self.path, int(page.index), page)
        shown, _ = shown_bands(image, self._rgb())
        return shown


def _number(text: str) -> HeaderValue:
    """An OME attribute's value: a number when it reads as one."""
    if re.fullmatch(r"[-+]?\d+", text.strip()):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text[:TEXT_CAP]
    return number if math.isfinite(number) else text
