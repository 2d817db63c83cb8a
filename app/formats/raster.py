"""Ordinary rasters (TIFF, PNG, JPEG) read with libvips."""

from __future__ import annotations

from pathlib import Path

import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.store.base import HeaderValue

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
        pages = image.get("n-pages") if "n-pages" in image.get_fields() else 1
        if isinstance(pages, int) and pages > 1:
            from app.formats.tiff import pages_note

            notes.append(pages_note(self.path, pages) if self.format == "tiff" else
                         f"{pages} pages; page 1 shown")
        notes.append(_shown_bands(image)[1])
        return [Plane(hdu=0, name=self.path.name, width=image.width, height=image.height,
                      bitpix=_BITPIX.get(str(image.format)), header=header,
                      note="; ".join(note for note in notes if note))]

    def pixel_bytes(self) -> int:
        image = self._image
        return int(image.width * image.height * image.bands) * abs(_BITPIX.get(str(image.format), 64)) // 8

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        image = self._image
        if self.format == "tiff" and image.bands > 1:
            planes = _separate_planes(self.path)
            image = image if planes is None else planes.copy(interpretation=image.interpretation)
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


def _separate_planes(path: Path) -> pyvips.Image | None:
    """The first page of a TIFF whose bands are stored as separate planes, decoded by tifffile: libvips
    misreads such strips and refuses such tiles. None for other TIFFs."""
    import tifffile

    from app.formats.tiff import lazy_page

    try:
        with tifffile.TiffFile(str(path), _multifile=False) as tif:
            page = tif.pages.first
            if str(getattr(page.planarconfig, "name", "")) != "SEPARATE":
                return None
            return lazy_page(path, 0, page)
    except FormatError:
        raise
    except Exception:  # libvips reads what tifffile cannot: keep libvips' reading
        return None


def _vips_reason(error: pyvips.Error) -> str:
    detail = str(getattr(error, "detail", "") or error).strip().splitlines()
    return detail[0][:300] if detail else "unknown libvips error"
