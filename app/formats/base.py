"""What every format reader gives the pipeline: the 2-D images in a file, their headers, and their pixels."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyvips

from app.store.records import HeaderValue


@dataclass
class Plane:
    """One 2-D image found in a file, with everything the catalog records about it."""

    hdu: int
    name: str
    width: int
    height: int
    bitpix: int | None
    header: dict[str, HeaderValue]
    comments: dict[str, str] = field(default_factory=dict)
    sky: dict[str, Any] | None = None
    note: str = ""
    # more than one plane of pixels in this image (a cube, a stack): {"count": n, "axis": its name,
    # "unit": the unit of its values, "values": the coordinate of each plane (or null)}; else empty
    planes: dict[str, Any] = field(default_factory=dict)
    # the default display the file asks for, as (low, high) in the values `pixels()` gives (DICOM's VOI
    # window); used in place of the `auto` interval
    window: tuple[float, float] | None = None
    invert: bool = False  # shown with black and white swapped (DICOM's MONOCHROME1); the values stay
    # one slice of a series that other files continue (a single-frame DICOM file): {"uid": the series'
    # catalogued SeriesInstanceUID, "position": along the slice normal in mm (or None), "instance":
    # InstanceNumber (or None)}; the ingest joins the slices of one series into one image with planes
    series: dict[str, Any] | None = None
    # the celestial WCS (astropy) the reader built from the very cards in `header`, when it built one: the
    # footprint is computed from it instead of building it again (app/ingest/tiling.py); never catalogued
    celestial: Any = field(default=None, repr=False, compare=False)


class Reader(ABC):
    """A reader for one format. Readers run inside pool processes: they may block and use the CPU."""

    format: str = ""
    # keyword arguments the reader takes besides `max_pixels`: the site settings `render_file` passes on
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, path: Path, *, max_pixels: int) -> None:
        self.path = path
        self.max_pixels = max_pixels
        # False: `planes()` may leave each plane's `sky` out (the second phase of an ingest: it is
        # catalogued already)
        self.with_sky = True

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes) -> bool:
        """True when the first bytes of a file say it is this format."""

    @classmethod
    def claims(cls, path: Path, head: bytes) -> bool:
        """True when the file is this format. By default its first bytes decide (`sniff`); a reader whose
        format is told by metadata that may lie anywhere in the file (a TIFF's tags) opens the file to look,
        cheaply and without raising."""
        return cls.sniff(head)

    @abstractmethod
    def planes(self) -> list[Plane]:
        """Every 2-D image in the file, validated; raises FormatError with a precise message."""

    @abstractmethod
    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        """The pixels of plane `index` of `plane` (0 unless it has `planes`), top row first, as a libvips
        image (not yet computed)."""

    @abstractmethod
    def pixel_bytes(self) -> int:
        """Bytes the file's images hold once decompressed, as its headers declare them (read no pixels):
        what a small compressed file may unfold into."""

    def unzip_bytes(self) -> int:
        """Bytes `unzip` writes to disk: 0 for a file whose pixels are read where they lie."""
        return 0

    def unzip(self, folder: Path) -> None:  # noqa: B027 - only a gzipped format has anything to unzip
        """Decompress the file into `folder` (a scratch folder the caller removes) and read it from there,
        so that its pixels stream instead of being read whole; nothing when `unzip_bytes` is 0."""

    def close(self) -> None:  # noqa: B027 - readers without open files need not override it
        """Release open files."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def check_size(path: Path, where: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse images whose declared size is empty or beyond the configured maximum."""
    from app.exceptions import FormatError

    if width <= 0 or height <= 0:
        raise FormatError(f"{path.name}: {where} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise FormatError(
            f"{path.name}: {where} declares {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,} (IMAGEX_MAX_PIXELS)")
