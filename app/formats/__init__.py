"""Format readers, chosen by a file's content, never by its name."""

from __future__ import annotations

from pathlib import Path

from app.exceptions import FormatError, UnsupportedFormat
from app.formats.base import Plane, Reader
from app.formats.dicom import DicomReader
from app.formats.dm import DmReader
from app.formats.fits import FitsReader
from app.formats.geotiff import GeoTiffReader
from app.formats.raster import RasterReader
from app.formats.tiff import MicroscopyTiffReader

READERS: tuple[type[Reader], ...] = (FitsReader, DicomReader, DmReader, GeoTiffReader, MicroscopyTiffReader,
                                     RasterReader)
# what the messages for content ImageX cannot read say it reads
KNOWN_FORMATS = ("FITS (also tile-compressed and gzipped), DICOM, Gatan DM3/DM4, TIFF (also GeoTIFF, "
                 "OME-TIFF and ImageJ), PNG and JPEG")
HEAD_BYTES = 2880


def sniff(path: Path) -> type[Reader]:
    """The reader class for `path`, judged by its first bytes; UnsupportedFormat says what it saw."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise FormatError(f"{path}: permission denied: the file cannot be read") from None
    except FileNotFoundError:
        raise FormatError(f"{path}: the file no longer exists") from None
    except OSError as error:
        raise FormatError(f"{path}: cannot be read: {error.strerror or error}") from None
    if not head:
        raise UnsupportedFormat(f"{path.name}: empty file (0 bytes)")
    for reader in READERS:
        if reader.claims(path, head):
            return reader
    raise UnsupportedFormat(f"{path.name}: {looks_like(head)}; ImageX reads {KNOWN_FORMATS}")


def looks_like(head: bytes) -> str:
    """A short account of what unrecognised content looks like."""
    text = head.lstrip()[:200].lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        return "this is an HTML page, not an image"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "this is an XML/SVG document, not a raster image"
    if head.startswith(b"%PDF"):
        return "this is a PDF document, not an image"
    if head.startswith(b"PK\x03\x04"):
        return "this is a ZIP archive; unpack it first"
    if len(head) < 80 and b"SIMPLE  =".startswith(head[:9]):
        return f"starts like FITS but ends after {len(head)} bytes, inside its first header card"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file whose content cannot be read (damaged, or cut short near its start)"
    if head.startswith(b"SIMPLE") or (b"BITPIX  =" in head[:2880] and b"NAXIS   =" in head[:2880]):
        return "starts like FITS but the first header card is malformed (a FITS file opens with SIMPLE = T)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary content"
    return "this is a text file, not an image"


def is_candidate(path: Path) -> bool:
    """Cheap test used by folder scans: does the file start like something we read?"""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    return any(reader.claims(path, head) for reader in READERS)


__all__ = ["KNOWN_FORMATS", "READERS", "DicomReader", "DmReader", "FitsReader", "GeoTiffReader",
           "MicroscopyTiffReader", "Plane", "RasterReader",
           "Reader", "is_candidate", "sniff"]
