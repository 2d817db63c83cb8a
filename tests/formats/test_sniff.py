"""Formats are judged by content, never by name: misnamed images are read, non-images are named for what
they are."""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.exceptions import FormatError, UnsupportedFormat
from app.formats import FitsReader, RasterReader, is_candidate, sniff
from tests.formats.format_helpers import gradient_rgb
from tests.helpers import ingest

GREY16 = (np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 12)


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.fits", b"SIMPLE  =                    T" + b" " * 50)
    return buffer.getvalue()


@pytest.fixture
def misnamed(write_fits, write_raster):
    """name -> a file whose content is another format than its name says."""

    def make(kind: str, name: str) -> Path:
        if kind == "png":
            return write_raster(name, gradient_rgb(), saver="png")
        if kind == "jpeg":
            return write_raster(name, gradient_rgb(), saver="jpeg")
        if kind == "tiff":
            return write_raster(name, GREY16, saver="tiff")
        path = write_fits(name, size=64)
        if kind == "fits.gz":
            path.write_bytes(gzip.compress(path.read_bytes()))
        return path

    return make


MISNAMED = [
    # (content, file name, reader, catalog format)
    ("png", "x.fits", RasterReader, "png"),
    ("fits", "x.png", FitsReader, "fits"),
    ("jpeg", "photo.tif", RasterReader, "jpeg"),
    ("tiff", "scan.jpg", RasterReader, "tiff"),
    ("fits.gz", "compressed.png", FitsReader, "fits"),
    ("png", "no_suffix", RasterReader, "png"),
    ("fits", "data.txt", FitsReader, "fits"),
]


@pytest.mark.parametrize(("kind", "name", "reader", "catalog_format"), MISNAMED)
async def test_misnamed_image_is_read_by_its_content(archive, misnamed, kind, name, reader, catalog_format):
    path = misnamed(kind, name)
    assert sniff(path) is reader
    assert is_candidate(path)
    [job] = await ingest(archive, path)
    assert job.state == "done", job.error
    [image] = await archive.store.find_images()
    assert image.format == catalog_format
    assert Path(image.path).name == name
    assert (archive.tile_folder(image.id) / "image.dzi").is_file()


UNSUPPORTED = [
    # (file name, content, what the message must say)
    ("page.fits", b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>",
     "this is an HTML page, not an image"),
    ("shout.fits", b"\n  <HTML><BODY>Error</BODY></HTML>", "this is an HTML page, not an image"),
    ("notes.fits", b"RA DEC MAG\n150.1 2.2 17.3\n150.2 2.3 18.1\n", "this is a text file, not an image"),
    ("empty.fits", b"", "empty file (0 bytes)"),
    ("bundle.fits", _zip_bytes(), "this is a ZIP archive; unpack it first"),
    ("paper.fits", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "this is a PDF document, not an image"),
    ("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
     "this is an XML/SVG document, not a raster image"),
    ("noise.fits", bytes([0, 1, 0xFE, 0xFF]) + np.random.default_rng(1).bytes(3000),
     "unrecognised binary content"),
    ("broken.fits", b"SIMPLE = T / not in FITS card layout".ljust(2880), "starts like FITS but the first "
     "header card is malformed"),
]


@pytest.mark.parametrize(("name", "content", "message"), UNSUPPORTED, ids=[row[0] for row in UNSUPPORTED])
def test_unsupported_content_is_named_for_what_it_is(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedFormat) as caught:
        sniff(path)
    text = str(caught.value)
    assert text.startswith(f"{name}: ")
    assert message in text
    if content:
        assert ("ImageX reads FITS (also tile-compressed and gzipped), DICOM, Gatan DM3/DM4, TIFF (also "
                "GeoTIFF, OME-TIFF and ImageJ), PNG and JPEG") in text
    assert not is_candidate(path)


def test_a_missing_file_and_a_folder_get_their_own_messages(tmp_path):
    with pytest.raises(FormatError, match=re.escape("gone.fits: the file no longer exists")):
        sniff(tmp_path / "gone.fits")
    folder = tmp_path / "folder.fits"
    folder.mkdir()
    with pytest.raises(FormatError, match=re.escape("folder.fits: is a folder, not a file")):
        sniff(folder)
    assert not is_candidate(folder)
