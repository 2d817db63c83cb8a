"""A small writer of Gatan DigitalMicrograph files (DM3 and DM4), for the sample images and the tests: the
tag tree laid out as DigitalMicrograph writes it (a thumbnail first in the ImageList, named by the root's
Thumbnails group), with the tags and calibration the caller chooses, so that what the reader harvests can be
asserted exactly.

Values map onto DM tag types: dict -> tag group, list of dicts -> group of unnamed groups, bool -> boolean,
int -> long, float -> double, np.float32 -> float, str -> array of 16-bit characters (as DM writes text),
tuple of numbers -> struct, 1-D numpy array -> array of simple type."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

GROUP, DATA = 20, 21
SHORT, LONG, USHORT, ULONG, FLOAT, DOUBLE, BOOLEAN, CHAR, OCTET = 2, 3, 4, 5, 6, 7, 8, 9, 10
STRUCT, STRING, ARRAY = 15, 18, 20
# numpy type -> (DM image DataType, the simple type of its Data array, elements per pixel): a complex64
# pixel is one 8-byte element, as RosettaSciIO counts them
IMAGE_TYPES = {
    "int16": (1, SHORT, 1), "float32": (2, FLOAT, 1), "complex64": (3, DOUBLE, 1), "uint8": (6, OCTET, 1),
    "int32": (7, LONG, 1), "int8": (9, CHAR, 1), "uint16": (10, USHORT, 1), "uint32": (11, ULONG, 1),
    "float64": (12, DOUBLE, 1), "complex128": (13, DOUBLE, 2),
}
SIMPLE_DTYPES = {SHORT: "i2", LONG: "i4", USHORT: "u2", ULONG: "u4", FLOAT: "f4", DOUBLE: "f8",
                 BOOLEAN: "u1", CHAR: "i1", OCTET: "u1"}
ARRAY_CODES = {"int16": SHORT, "int32": LONG, "uint16": USHORT, "uint32": ULONG, "float32": FLOAT,
               "float64": DOUBLE, "uint8": OCTET, "int8": CHAR}


class Binary:
    """Pixel data for an ImageData.Data tag: `count` elements of simple type `code`, written in the file's
    byte order (an RGB image's B, G, R, A bytes are each pixel's 32-bit word)."""

    def __init__(self, pixels: np.ndarray, code: int, count: int, *, rgb: bool = False) -> None:
        self.pixels, self.code, self.count, self.rgb = pixels, code, count, rgb

    def raw(self, order: str) -> bytes:
        if self.rgb:
            return (self.pixels if order == "<" else self.pixels[:, :, ::-1]).tobytes()
        return self.pixels.astype(self.pixels.dtype.newbyteorder("<" if order == "<" else ">")).tobytes()


class _Writer:
    def __init__(self, version: int, order: str) -> None:
        self.version, self.order = version, order
        self.long = ">Q" if version == 4 else ">I"

    def number(self, value: int) -> bytes:
        return struct.pack(self.long, value)

    def group(self, entries: list[tuple[str, Any]]) -> bytes:
        body = b"".join(self.entry(name, value) for name, value in entries)
        return bytes([0, 1]) + self.number(len(entries)) + body

    def entry(self, name: str, value: Any) -> bytes:
        label = name.encode("latin-1")
        if isinstance(value, dict | list) and not isinstance(value, Binary):
            kind, content = GROUP, self.group(_entries(value))
        else:
            kind, content = DATA, self.data(value)
        size = self.number(len(content)) if self.version == 4 else b""
        return bytes([kind]) + struct.pack(">H", len(label)) + label + size + content

    def data(self, value: Any) -> bytes:
        if isinstance(value, Binary):
            info, raw = [ARRAY, value.code, value.count], value.raw(self.order)
        elif isinstance(value, str):
            units = value.encode("utf-16-le" if self.order == "<" else "utf-16-be")
            info, raw = [ARRAY, USHORT, len(units) // 2], units
        elif isinstance(value, bool):
            info, raw = [BOOLEAN], bytes([value])
        elif isinstance(value, Dimension):
            info, raw = [ULONG], struct.pack(self.order + "I", value)
        elif isinstance(value, np.float32):
            info, raw = [FLOAT], struct.pack(self.order + "f", value)
        elif isinstance(value, int):
            info, raw = [LONG], struct.pack(self.order + "i", value)
        elif isinstance(value, float):
            info, raw = [DOUBLE], struct.pack(self.order + "d", value)
        elif isinstance(value, tuple):
            codes = [FLOAT if isinstance(item, float) else LONG for item in value]
            info = [STRUCT, 0, len(value)] + [n for code in codes for n in (0, code)]
            raw = b"".join(struct.pack(self.order + ("f" if code == FLOAT else "i"), item)
                           for code, item in zip(codes, value, strict=True))
        elif isinstance(value, np.ndarray):
            code = ARRAY_CODES[value.dtype.name]
            info, raw = [ARRAY, code, value.size], value.astype(self.order + SIMPLE_DTYPES[code]).tobytes()
        else:
            raise TypeError(f"no DM tag type for {value!r}")
        return b"%%%%" + self.number(len(info)) + b"".join(self.number(n) for n in info) + raw


def _entries(value: dict[str, Any] | list[Any]) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else [("", item) for item in value]


def image_entry(pixels: np.ndarray, *, name: str = "", tags: dict[str, Any] | None = None,
                calibration: list[tuple[float, str]] | None = None, data_type: int | None = None
                ) -> dict[str, Any]:
    """An ImageList entry for `pixels`: (height, width) or (slices, height, width), or (height, width, 3)
    uint8 for an RGB image. `calibration` gives (scale, units) per axis, x first."""
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        height, width = pixels.shape[:2]
        dimensions = [width, height]
        rgba = np.dstack([pixels[:, :, 2], pixels[:, :, 1], pixels[:, :, 0],
                          np.full((height, width), 255, np.uint8)])  # stored B, G, R, A
        data = Binary(rgba, ULONG, width * height, rgb=True)
        code, depth = 23, 4
    else:
        dimensions = list(reversed(pixels.shape))
        code, element, per_pixel = IMAGE_TYPES[pixels.dtype.name]
        data = Binary(pixels, element, pixels.size * per_pixel)
        depth = pixels.dtype.itemsize
    axes = calibration or [(1.0, "")] * len(dimensions)
    return {
        "ImageData": {
            "Calibrations": {
                "Brightness": {"Origin": np.float32(0.0), "Scale": np.float32(1.0), "Units": "Counts"},
                "Dimension": [{"Origin": np.float32(0.0), "Scale": np.float32(scale), "Units": units}
                              for scale, units in axes],
                "DisplayCalibratedUnits": True,
            },
            "Data": data,
            "DataType": data_type if data_type is not None else code,
            "Dimensions": [Dimension(n) for n in dimensions],
            "PixelDepth": depth,
        },
        "ImageTags": tags or {},
        "Name": name,
        "UniqueID": {"0": 1, "1": 2, "2": 3, "3": 4},
    }


class Dimension(int):
    """An image dimension: written as an unsigned long, as DM writes them."""


def write_dm(path: Path, images: list[dict[str, Any]], *, version: int = 3, thumbnail: bool = True,
             root: dict[str, Any] | None = None, big_endian: bool = False) -> Path:
    """Write a DM file holding `images` (from `image_entry`), after a small RGB thumbnail when asked; its
    values little-endian, as DigitalMicrograph on a PC writes them, or big-endian (old Macintosh files)."""
    entries = list(images)
    if thumbnail:
        entries.insert(0, image_entry(np.zeros((8, 8, 3), np.uint8), name="thumbnail"))
    tree: dict[str, Any] = {"ApplicationBounds": (0, 0, 812, 1024), **(root or {}), "ImageList": entries}
    if thumbnail:
        tree["Thumbnails"] = [{"ImageIndex": 0, "SourceSize_Pixels": (8, 8)}]
    writer = _Writer(version, ">" if big_endian else "<")
    body = writer.group(list(tree.items())) + bytes(8)
    header_size = 16 if version == 4 else 12
    declared = header_size + len(body) - (24 if version == 4 else 16)
    header = struct.pack(">i", version) + writer.number(declared) + struct.pack(">i", 0 if big_endian else 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body)
    return path
