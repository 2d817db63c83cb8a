"""Ordinary rasters (TIFF, PNG, JPEG) read with libvips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.store.records import HeaderValue

_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_BITPIX = {"uchar": 8, "char": 8, "ushort": 16, "short": 16, "uint": 32, "int": 32, "float": -32,
           "double": -64}
_LOADERS = {"pngload": "png", "jpegload": "jpeg", "tiffload": "tiff"}
# What libvips calls the interpretations of colour images; the bands of any other image are not colours
_COLOUR = {"srgb", "rgb16", "scrgb", "cmyk", "lab", "labq", "labs", "lch", "cmc", "xyz", "yxy", "hsv"}
_SKIP_FIELDS = {"icc-profile-data", "exif-data", "xmp-data", "iptc-data", "ipct-data", "png-comment-0-data",
                "vips-sequential"}


class RasterReader(Reader):
    format = "raster"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(_SIGNATURES)

    def __init__(self, path: Path, *, max_pixels: int) -> None:
        super().__init__(path, max_pixels=max_pixels)
        try:
            self._image = pyvips.Image.new_from_file(str(path), fail_on="error")
        except pyvips.Error as error:
            raise FormatError(f"{path.name}: not a readable image: {_vips_reason(error)}") from None
        loader = str(self._image.get("vips-loader")) if "vips-loader" in self._image.get_fields() else ""
        if loader not in _LOADERS:
            raise FormatError(f"{path.name}: unexpected image type ({loader or 'unknown loader'})")
        self.format = _LOADERS[loader]

    def planes(self) -> list[Plane]:
        image = self._image
        check_size(self.path, "the image", image.width, image.height, self.max_pixels)
        header: dict[str, HeaderValue] = {
            "WIDTH": image.width, "HEIGHT": image.height, "BANDS": image.bands,
            "FORMAT": str(image.format), "INTERPRETATION": str(image.interpretation),
        }
        for name in image.get_fields():
            if name in _SKIP_FIELDS or name.endswith("-data"):
                continue
            try:
                value = image.get(name)
            except pyvips.Error:
                continue
            if isinstance(value, bool | int | float):
                header[name] = value
            elif isinstance(value, str) and len(value) <= 2000:
                header[name] = value
        notes = []
        planes: dict[str, Any] = {}
        pages = self._pages()
        if len(pages) > 1:
            # the pages of a multi-page TIFF that are images like the first (not its reduced copies)
            notes.append(f"{len(pages)} pages")
            planes = {"count": len(pages), "axis": "page", "unit": "", "values": None,
                      "labels": [f"page {page + 1}" for page in pages]}
        elif image.get("n-pages") > 1 if "n-pages" in image.get_fields() else False:
            from app.formats.tiff import pages_note

            notes.append(pages_note(self.path, int(image.get("n-pages"))))
        shown, shown_note = _shown_bands(image)
        if not planes and shown.bands == 1 and image.bands > 2:
            # a multi-band image that is not a colour picture: each band is a plane
            notes.append(f"{image.bands} bands")
            planes = {"count": image.bands, "axis": "band", "unit": "", "values": None,
                      "labels": [f"band {band + 1}" for band in range(image.bands)]}
        else:
            notes.append(shown_note)
        return [Plane(hdu=0, name=self.path.name, width=image.width, height=image.height,
                      bitpix=_BITPIX.get(str(image.format)), header=header,
                      note="; ".join(note for note in notes if note), planes=planes)]

    def _pages(self) -> list[int]:
        """The pages of the file that are images like its first: same size, bands and type (a pyramid's
        reduced pages are not). Only the first when there are no others."""
        count = self._image.get("n-pages") if "n-pages" in self._image.get_fields() else 1
        if not isinstance(count, int) or count < 2 or self.format != "tiff":
            return [0]
        first = self._image
        alike = [0]
        for page in range(1, count):
            try:
                other = pyvips.Image.new_from_file(str(self.path), page=page, fail_on="error")
            except pyvips.Error:
                continue
            if (other.width, other.height, other.bands, other.format) == \
                    (first.width, first.height, first.bands, first.format):
                alike.append(page)
        return alike

    def pixel_bytes(self) -> int:
        image = self._image
        return int(image.width * image.height * image.bands) * abs(_BITPIX.get(str(image.format), 64)) // 8

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        count = int(plane.planes.get("count", 1)) if plane.planes else 1
        if not 0 <= index < count:
            raise FormatError(f"{self.path.name}: plane {index + 1} asked of an image with {count}")
        page = 0
        if plane.planes.get("axis") == "page":
            page = self._pages()[index]
        image = self._image if page == 0 else pyvips.Image.new_from_file(str(self.path), page=page,
                                                                         fail_on="error")
        if self.format == "tiff" and image.bands > 1:
            planes = _separate_planes(self.path, page)
            image = image if planes is None else planes.copy(interpretation=image.interpretation)
        if plane.planes.get("axis") == "band":
            return image[index]
        image, _ = _shown_bands(image)
        if str(image.interpretation) in {"cmyk"}:
            image = image.colourspace("srgb")
        return image


def _shown_bands(image: pyvips.Image) -> tuple[pyvips.Image, str]:
    """The bands to display and a note on those left out. Transparency is flattened onto black; an image
    of more than two bands that libvips does not take for colour (a 5-band TIFF) shows its first band."""
    bands = image.bands
    if bands > 2 and str(image.interpretation) not in _COLOUR:
        return image[0], f"{bands} bands; band 1 shown"
    if image.hasalpha():
        image = image.flatten(background=0)
    if image.bands == 2:
        return image[0], ""
    if image.bands > 3 and str(image.interpretation) != "cmyk":
        return image[:3], f"{bands} bands; bands 1-3 shown as red, green and blue"
    return image, ""


def _separate_planes(path: Path, index: int = 0) -> pyvips.Image | None:
    """Page `index` of a TIFF whose bands are stored as separate planes, decoded by tifffile: libvips
    misreads such strips and refuses such tiles. None for other TIFFs."""
    import tifffile

    from app.formats.tiff import lazy_page

    try:
        with tifffile.TiffFile(str(path), _multifile=False) as tif:
            page: Any = tif.pages[index]
            if str(getattr(getattr(page, "planarconfig", None), "name", "")) != "SEPARATE":
                return None
            return lazy_page(path, index, page)
    except FormatError:
        raise
    except Exception:  # libvips reads what tifffile cannot: keep libvips' reading
        return None


def _vips_reason(error: pyvips.Error) -> str:
    detail = str(getattr(error, "detail", "") or error).strip().splitlines()
    return detail[0][:300] if detail else "unknown libvips error"
