"""Gatan DigitalMicrograph files (.dm3, .dm4) from electron microscopes: the tag tree read with RosettaSciIO,
the pixels memory-mapped with numpy.

Why RosettaSciIO (`rsciio.digitalmicrograph`) and not ncempy (`ncempy.io.dm`): both read DM3 and DM4 and
both give the pixels' offset so that they can be memory-mapped. RosettaSciIO's tag parser keeps the tree as
DigitalMicrograph wrote it, each value typed (numbers, booleans, text decoded from DM's 16-bit character
arrays, structs as tuples), reads big-endian files too, names the thumbnail by the root's Thumbnails group
and reads from a file object whose position says where a damaged tree stops. ncempy flattens the tree into
one dictionary whose short arrays, numeric ones included, become text, counts images by tag names found
anywhere in the tree, takes the first image to be the thumbnail, refuses big-endian files and fails on a
damaged tree with a bare `assert`. RosettaSciIO is maintained by the HyperSpy developers, who test it on
Gatan's files of every data type; its dependencies (dask, pint, python-box, PyYAML, python-dateutil) are
pure Python or have wheels. Its public `file_reader` builds HyperSpy signals and metadata; ImageX uses the
tag parser it is built on (`DigitalMicrographReader`) and maps the pixels itself, one slice at a time, so
a stack is never loaded whole.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.store.records import HeaderValue

# DM image DataType -> numpy type (packed complex FFT data, 5, 27 and 28, is not read)
_DTYPES = {1: "i2", 2: "f4", 3: "c8", 6: "u1", 7: "i4", 9: "i1", 10: "u2", 11: "u4", 12: "f8", 13: "c16",
           14: "u1"}
_RGB = {8, 23}  # 4 bytes a pixel: blue, green, red, alpha
_PACKED_COMPLEX = {5, 27, 28}
_VIPS_FORMATS = {"uint8": "uchar", "int8": "char", "uint16": "ushort", "int16": "short", "uint32": "uint",
                 "int32": "int", "float32": "float", "float64": "double"}
# lengths as DM spells them -> the unit text OME (and app/sky/readout.physical_scale) reads
_LENGTHS = {"m": "m", "cm": "cm", "mm": "mm", "um": "um", "µm": "um", "μm": "um", "micron": "um",
            "nm": "nm", "pm": "pm", "Å": "Å", "Angstrom": "Å", "Angstroms": "Å"}
# a spectrum's signal (ImageTags.Meta Data.Signal) -> the name of its spectral axis, as RosettaSciIO names it
_SIGNAL_AXES = {"EELS": "energy loss", "X-ray": "energy", "CL": "wavelength"}
_UNNAMED = re.compile(r"(?:TagGroup|Data)(\d+)")  # RosettaSciIO's names for DM's unnamed tags
_MAX_TAGS = 2000
_MAX_TEXT = 2000
_MAX_ARRAY = 16
_MAX_KEY = 200


def _sniff_fields(head: bytes) -> tuple[int, int] | None:
    """(version, declared size) when `head` opens a DM3 or DM4 file, else None."""
    if len(head) < 26:
        return None
    version = int.from_bytes(head[:4], "big")
    if version == 3:
        size, order, root = int.from_bytes(head[4:8], "big"), int.from_bytes(head[8:12], "big"), head[12:18]
        tags = int.from_bytes(root[2:6], "big")
    elif version == 4:
        size, order, root = int.from_bytes(head[4:12], "big"), int.from_bytes(head[12:16], "big"), head[16:26]
        tags = int.from_bytes(root[2:10], "big")
    else:
        return None
    # the byte order flag, the root group's sorted and open flags are each 0 or 1; the root holds tags
    if order > 1 or root[0] > 1 or root[1] > 1 or not 0 < tags < 1 << 20 or not 16 <= size < 1 << 48:
        return None
    return version, size


class DmReader(Reader):
    format = "dm3"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return _sniff_fields(head) is not None

    def __init__(self, path: Path, *, max_pixels: int) -> None:
        super().__init__(path, max_pixels=max_pixels)
        with path.open("rb") as handle:
            fields = _sniff_fields(handle.read(26))
            if fields is None:
                raise FormatError(f"{path.name}: not a DigitalMicrograph file (its DM3/DM4 header is "
                                  "damaged)")
            self.version, declared = fields
            self.format = f"dm{self.version}"
            self.size = path.stat().st_size
            handle.seek(0)
            parser = _tag_parser()(handle)
            try:
                parser.parse_file()
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as error:  # the parser raises many kinds on a damaged tree
                raise FormatError(self._damage(error, handle.tell(), declared)) from None
        self.little_endian = parser.endian == "little"
        # the parser puts the root group's tags beside an empty "root" entry
        self.tags: dict[str, Any] = {key: value for key, value in parser.tags_dict.items() if key != "root"}
        self._maps: list[Any] = []

    def _damage(self, error: Exception, where: int, declared: int) -> str:
        """What a parse failure at byte `where` says about the file."""
        name, size = self.path.name, self.size
        if where >= size or isinstance(error, struct.error | EOFError):
            stop = min(where, size)
            if declared > size:
                return (f"{name}: the file is cut short: the tag tree ends early at byte {stop:,} (the file "
                        f"has {size:,} bytes, its header declares a length of {declared:,})")
            return (f"{name}: the tag tree ends early at byte {stop:,} (the file has {size:,} bytes): a "
                    "length in the tag tree is damaged")
        reason = _reason(error)
        return f"{name}: the tag tree is damaged at byte {where:,}: {reason}"

    def close(self) -> None:
        self._maps.clear()

    def _images(self) -> list[tuple[int, dict[str, Any]]]:
        """(ImageList index, image group) of every image but the thumbnails."""
        image_list = self.tags.get("ImageList")
        if not isinstance(image_list, dict) or not image_list:
            raise FormatError(f"{self.path.name}: a DigitalMicrograph file with no ImageList (no image)")
        thumbnails = self.tags.get("Thumbnails")
        skip = {entry.get("ImageIndex") for entry in thumbnails.values() if isinstance(entry, dict)} \
            if isinstance(thumbnails, dict) else set()
        images = []
        for position, (key, entry) in enumerate(image_list.items()):
            match = _UNNAMED.fullmatch(key)
            index = int(match[1]) if match else position
            if index not in skip and isinstance(entry, dict):
                images.append((index, entry))
        return images

    def _layout(self, index: int, entry: dict[str, Any]) -> _Layout:
        """The validated shape, type and place of an image's pixels."""
        where = f"image {index} of the ImageList"
        data = entry.get("ImageData")
        if not isinstance(data, dict):
            raise FormatError(f"{self.path.name}: {where} has no ImageData")
        dims = data.get("Dimensions")
        shape = [value for value in dims.values()] if isinstance(dims, dict) else []
        if not shape or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
            raise FormatError(f"{self.path.name}: {where} has no readable Dimensions")
        code = data.get("DataType")
        if not isinstance(code, int):
            raise FormatError(f"{self.path.name}: {where} has no DataType")
        return _Layout(self.path.name, where, shape, code, data.get("Data"), self.little_endian)

    def planes(self) -> list[Plane]:
        planes: list[Plane] = []
        skipped: list[str] = []
        for index, entry in self._images():
            layout = self._layout(index, entry)
            if len(layout.shape) < 2:
                skipped.append(f"image {index} is 1-D ({layout.shape[0]} values)")
                continue
            check_size(self.path, layout.where, layout.width, layout.height, self.max_pixels)
            layout.check(self.size)
            header = self._header(entry, layout)
            notes = []
            if layout.slices > 1:
                notes.append(f"a stack of {layout.slices} slices")
            if layout.dtype.kind == "c":
                notes.append("complex data: the magnitude is shown")
            title = entry.get("Name")
            name = title.strip() if isinstance(title, str) and title.strip() else self.path.name
            planes.append(Plane(hdu=index, name=name, width=layout.width, height=layout.height,
                                bitpix=layout.bitpix, header=header, note="; ".join(notes),
                                planes=_stack_axis(entry, layout) if layout.slices > 1 else {}))
        if not planes:
            what = "; ".join(skipped) or "only a thumbnail"
            raise FormatError(f"{self.path.name}: a DigitalMicrograph file with no 2-D image ({what})")
        if len(planes) > 1:
            for plane in planes:
                plane.name += f" [{plane.hdu}]"
        return planes

    def _header(self, entry: dict[str, Any], layout: _Layout) -> dict[str, HeaderValue]:
        """Every tag of the image (its ImageTags without that prefix, then its ImageData and the rest),
        then the file's root tags, flattened to dotted paths; the basics and the spatial calibration
        first, under OME's names."""
        header: dict[str, HeaderValue] = {"WIDTH": layout.width, "HEIGHT": layout.height}
        if layout.slices > 1:
            header["SLICES"] = layout.slices
        header["FORMAT"] = "rgb" if layout.rgb else layout.dtype.name
        header["DM_VERSION"] = self.version
        header.update(_calibration(entry, layout))
        tags = entry.get("ImageTags")
        if isinstance(tags, dict):
            _flatten(tags, "", header)
        own = {key: value for key, value in entry.items() if key != "ImageTags"}
        image_data = own.get("ImageData")
        if isinstance(image_data, dict):
            own["ImageData"] = {key: value for key, value in image_data.items() if key != "Data"}
        _flatten(own, "", header)
        _flatten({key: value for key, value in self.tags.items() if key != "ImageList"}, "", header)
        return header

    def pixel_bytes(self) -> int:
        total = 0
        for index, entry in self._images():
            layout = self._layout(index, entry)
            if len(layout.shape) >= 2:
                total += layout.pixels * layout.itemsize
        return total

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        entry = dict(self._images()).get(plane.hdu)
        if entry is None:
            raise FormatError(f"{self.path.name}: image {plane.hdu} is not in the ImageList")
        layout = self._layout(plane.hdu, entry)
        height, width = layout.height, layout.width
        if not 0 <= index < layout.slices:
            raise FormatError(f"{self.path.name}: slice {index + 1} asked of {layout.where}, which has "
                              f"{layout.slices}")
        # a stack's slices follow one another (DM lists x, y, then z: z varies slowest)
        offset = layout.offset + index * width * height * layout.itemsize
        try:
            if layout.rgb:
                mapped = np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset,
                                   shape=(height, width, 4))
            else:
                mapped = np.memmap(self.path, dtype=layout.dtype, mode="r", offset=offset,
                                   shape=(height, width))
        except (OSError, ValueError) as error:
            raise FormatError(f"{self.path.name}: {layout.where}: the pixel data cannot be read: {error}") \
                from None
        self._maps.append(mapped)
        if layout.rgb:
            stored = pyvips.Image.new_from_memory(mapped.data, width, height, 4, "uchar")
            # each pixel a 32-bit ARGB word: bytes B, G, R, A in a little-endian file, A, R, G, B else
            red, green, blue = (2, 1, 0) if self.little_endian else (1, 2, 3)
            return stored[red].bandjoin([stored[green], stored[blue]]).copy(interpretation="srgb")
        array: np.ndarray = mapped
        if layout.dtype.kind == "c":
            array = np.abs(mapped).astype(np.float64 if layout.dtype.itemsize == 16 else np.float32)
            self._maps.append(array)
        elif layout.code == 14:  # boolean
            array = mapped.view(np.uint8)
        image = pyvips.Image.new_from_memory(array.data, width, height, 1, _VIPS_FORMATS[array.dtype.name])
        # a big-endian file's bytes are swapped lazily by libvips while it tiles, straight from the map
        return image if array.dtype.isnative else image.byteswap()


def _tag_parser() -> type:
    """RosettaSciIO's DM tag parser, its booleans kept as booleans (it reads them as the numbers 0 and 1)."""
    from rsciio.digitalmicrograph._api import DigitalMicrographReader

    def read_boolean(handle: Any, _endian: str) -> bool:
        return bool(struct.unpack("B", handle.read(1))[0])  # struct.error at the end of the file

    class Parser(DigitalMicrographReader):  # type: ignore[misc]
        def get_data_reader(self, enc_dtype: int) -> Any:
            if enc_dtype == 8:
                return (read_boolean, 1, "B")
            return super().get_data_reader(enc_dtype)

    return Parser


class _Layout:
    """Where an image's pixels are, their shape (x first, as DM lists Dimensions) and their type."""

    def __init__(self, name: str, where: str, shape: list[int], code: int, data: Any,
                 little_endian: bool) -> None:
        self.name, self.where, self.shape, self.code = name, where, shape, code
        self.rgb = code in _RGB
        if code in _PACKED_COMPLEX:
            raise FormatError(f"{name}: {where} holds packed complex (FFT) data (DataType {code}), which "
                              "ImageX does not read")
        if not self.rgb and code not in _DTYPES:
            raise FormatError(f"{name}: {where} has an unknown pixel type (DataType {code})")
        self.dtype = np.dtype("u4" if self.rgb else _DTYPES[code]).newbyteorder("<" if little_endian else ">")
        self.itemsize = self.dtype.itemsize
        self.width = shape[0]
        self.height = shape[1] if len(shape) > 1 else 1
        self.slices = math.prod(shape[2:]) if len(shape) > 2 else 1
        self.pixels = math.prod(shape)
        self.data = data if isinstance(data, dict) else {}
        self.offset = int(self.data.get("offset", -1))

    def check(self, file_size: int) -> None:
        """The declared pixels fit the Data array and the file."""
        if self.offset < 0:
            raise FormatError(f"{self.name}: {self.where} has no pixel data (no ImageData.Data array)")
        need = self.pixels * self.itemsize
        held = self.data.get("size_bytes", 0)
        shape = "x".join(map(str, self.shape))
        if held < need:
            raise FormatError(f"{self.name}: {self.where} declares {shape} pixels of {self.itemsize} bytes "
                              f"({need:,} bytes) but its Data array holds {held:,} bytes")
        if self.offset + need > file_size:
            raise FormatError(f"{self.name}: the file is cut short: the pixels of {self.where} run from byte "
                              f"{self.offset:,} to {self.offset + need:,}, the file has {file_size:,} bytes")

    @property
    def bitpix(self) -> int:
        if self.rgb:
            return 8
        bits = self.itemsize * 8 // (2 if self.dtype.kind == "c" else 1)
        return -bits if self.dtype.kind in "fc" else bits


def _calibration(entry: dict[str, Any], layout: _Layout) -> dict[str, HeaderValue]:
    """The x and y pixel size under OME's names, from ImageData.Calibrations.Dimension (x first), each only
    when its unit is a length (a diffraction pattern's 1/nm is not) and the axis is not a spectrum's (a CL
    line scan's x is a wavelength in nm)."""
    found: dict[str, HeaderValue] = {}
    axes = _axes(entry)
    spectral_x = _is_spectrum(entry) and len(layout.shape) == 2
    for position, (axis, name) in enumerate(zip(axes[:2], ("X", "Y"), strict=False)):
        if not isinstance(axis, dict) or (position == 0 and spectral_x):
            continue
        scale, units = axis.get("Scale"), axis.get("Units")
        unit = _LENGTHS.get(units.strip()) if isinstance(units, str) else None
        if unit is None or isinstance(scale, bool) or not isinstance(scale, int | float):
            continue
        if math.isfinite(scale) and scale != 0:
            found[f"PhysicalSize{name}"] = abs(float(scale))
            found[f"PhysicalSize{name}Unit"] = unit
    return found


def _axes(entry: dict[str, Any]) -> list[Any]:
    """The image's ImageData.Calibrations.Dimension groups, x first."""
    calibrations = _get(entry, "ImageData", "Calibrations", "Dimension")
    return list(calibrations.values()) if isinstance(calibrations, dict) else []


def _is_spectrum(entry: dict[str, Any]) -> bool:
    """Does the image hold spectra? Then, as RosettaSciIO reads it, the spectral axis is x in a 2-D image
    (a spectrum, or a line of them) and the third axis in a 3-D one (a spectrum image)."""
    return _get(entry, "ImageTags", "Meta Data", "Format") in ("Spectrum image", "Spectrum") \
        or isinstance(_get(entry, "ImageTags", "spim"), dict)


def _stack_axis(entry: dict[str, Any], layout: _Layout) -> dict[str, Any]:
    """The planes of a stack: how many and, when the file calibrates its third axis in a unit, that unit
    and each plane's coordinate (index - Origin) x Scale, named after the spectrum's signal when the
    image holds spectra (an EELS spectrum image's planes are energy losses in eV)."""
    planes: dict[str, Any] = {"count": layout.slices, "axis": "slice", "unit": "", "values": None}
    axes = _axes(entry)
    if len(layout.shape) != 3 or len(axes) < 3 or not isinstance(axes[2], dict):
        return planes
    origin, scale = _number(axes[2].get("Origin")), _number(axes[2].get("Scale"))
    units = axes[2].get("Units")
    unit = _printable(units) if isinstance(units, str) else ""  # an empty unit is an empty list in DM
    if not unit or origin is None or scale is None or scale == 0:
        return planes
    values = [(index - origin) * scale for index in range(layout.slices)]
    signal = _get(entry, "ImageTags", "Meta Data", "Signal")
    axis = _SIGNAL_AXES.get(signal, "slice") if _is_spectrum(entry) and isinstance(signal, str) else "slice"
    return planes | {"axis": axis, "unit": unit, "values": values}


def _number(value: Any) -> float | None:
    """`value` as a finite float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _flatten(tree: dict[str, Any], prefix: str, out: dict[str, HeaderValue]) -> None:
    """Each tag of `tree` as `out[prefix + dotted path]`: numbers, booleans and text typed, short arrays
    and structs as lists of text; long text, long arrays and binary data left out; the first value of a
    path kept; at most _MAX_TAGS entries in all."""
    for key, value in tree.items():
        if len(out) >= _MAX_TAGS:
            return
        match = _UNNAMED.fullmatch(key)
        label = _printable(match[1] if match else key)
        path = f"{prefix}{label}"
        if len(path) > _MAX_KEY:
            continue
        if isinstance(value, dict):
            _flatten(value, f"{path}.", out)
            continue
        typed = _typed(value)
        if typed is not None and path not in out:
            out[path] = typed


def _typed(value: Any) -> HeaderValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | np.integer):
        number = int(value)
        return number if -(1 << 63) <= number < 1 << 63 else str(number)
    if isinstance(value, float | np.floating):
        real = float(value)
        return real if math.isfinite(real) else str(real)
    if isinstance(value, str):
        text = _printable(value)
        return text if len(text) <= _MAX_TEXT else None
    if isinstance(value, list | tuple) and 0 < len(value) <= _MAX_ARRAY:
        items = [_typed(item) for item in value]
        if all(isinstance(item, bool | int | float | str) for item in items):
            return [str(item) for item in items]
    return None


def _printable(text: str) -> str:
    """`text` without NULs and control characters (DM pads some text with NULs)."""
    return "".join(char for char in text if char.isprintable() or char in "\t\n").strip()


def _reason(error: Exception) -> str:
    from rsciio.exceptions import DM3DataTypeError, DM3TagIDError, DM3TagTypeError

    if isinstance(error, DM3TagIDError):
        kind = getattr(error, "dm3_tagID", error)
        kind = kind % 256 if isinstance(kind, int) else kind
        return f"a tag of unknown kind {kind} (expected 20, a group, or 21, a value)"
    if isinstance(error, DM3TagTypeError):
        return f"a tag's value does not open with '%%%%' (found {error})"
    if isinstance(error, DM3DataTypeError):
        return f"a value of unknown type {error}"
    if isinstance(error, KeyError):
        return f"a value of unknown type {error.args[0] if error.args else error}"
    if isinstance(error, UnboundLocalError):  # the parser met a type description it has no branch for
        return "a tag's type description is damaged"
    if isinstance(error, RecursionError):
        return "tag groups nested too deep"
    text = " ".join(str(part) for part in error.args) if error.args else type(error).__name__
    return text[:300]
