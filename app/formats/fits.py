"""FITS files read with astropy: primary and extension image HDUs, tile-compressed (.fz) and gzipped."""

from __future__ import annotations

import gzip
import math
import re
import shutil
import warnings
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.formats.fits_header import LIST_KEYWORDS, first_values, harvest, plain_cards, plain_wcs
from app.formats.fits_structure import BLOCK, Hdu, printable, walk

# a gzipped file whose images take more bytes than this is decompressed to disk and streamed from there
UNZIP_ABOVE = 32 << 20
# Structural keywords of one HDU that make no sense when copied onto another.
_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "EXTEND", "PCOUNT", "GCOUNT", "NEXTEND", "END", "CHECKSUM",
               "DATASUM", "BSCALE", "BZERO", "BLANK"}
# World coordinate cards (WCS paper I-III, SIP, TPV): never inherited, so that the WCS rebuilt from a
# catalog record (readout, mosaics) is the extension's own, as the sky position recorded at ingest is
_WCS_KEYWORD = re.compile(r"(WCSAXES|CTYPE|CRVAL|CRPIX|CDELT|CUNIT|CROTA|CRDER|CSYER|CNAME)\d*[A-Z]?"
                          r"|(CD|PC|PV|PS)\d+_\d+[A-Z]?|(A|B|AP|BP)_(ORDER|\d+_\d+|DMAX)"
                          r"|RADESYS[A-Z]?|RADECSYS|EQUINOX[A-Z]?|EPOCH|LONPOLE[A-Z]?|LATPOLE[A-Z]?"
                          r"|MJDREF|WCSNAME[A-Z]?")
_VIPS_FORMATS = {"uint8": "uchar", "int8": "char", "uint16": "ushort", "int16": "short", "uint32": "uint",
                 "int32": "int", "float32": "float", "float64": "double"}


def _inherited(keyword: str) -> bool:
    """May an extension saying INHERIT = T take this primary card? Not its structure, list cards or WCS."""
    return not (_is_structural(keyword) or keyword in LIST_KEYWORDS or _WCS_KEYWORD.fullmatch(keyword))


def _is_structural(keyword: str) -> bool:
    return keyword in _STRUCTURAL or ((keyword.startswith("NAXIS") and keyword[5:].isdigit())
                                      or keyword == "NAXIS")


# the type of the values FITS stores for each BITPIX, as they lie in the file (big-endian)
RAW_TYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclass(frozen=True)
class PixelPlace:
    """Where one plane's pixels lie in a FITS file and how its values are read: BITPIX, BSCALE/BZERO and
    BLANK (integers only)."""

    path: Path
    hdu: int
    offset: int  # of the plane's first byte in the file
    width: int
    height: int
    bitpix: int
    bscale: float = 1.0
    bzero: float = 0.0
    blank: int | None = None
    # a tile-compressed image (.fz): its rows are decompressed by astropy, band by band (`offset` unused)
    compressed: bool = False
    index: int = 0  # the plane's index in a cube (for a compressed one; a plain one's is in `offset`)


class FitsReader(Reader):
    format = "fits"
    OPTIONS = ("deferred",)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        if head[:2] == b"\x1f\x8b":
            try:
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 80)
            except zlib.error:
                return False
        return head.startswith(b"SIMPLE  =")

    def __init__(self, path: Path, *, max_pixels: int, deferred: bool = False) -> None:
        """`deferred`: astropy opens the file only when something needs it (pixels, or a header that is not
        plain: app/formats/fits_header.py): a batch catalogued from its headers reads most files without
        it. Otherwise it opens the file now, and a file it cannot read fails here."""
        super().__init__(path, max_pixels=max_pixels)

        self._gzipped = _is_gzip(path)
        self._source = path  # where the bytes are read: the file, or its decompressed copy (`unzip`)
        self.structure = walk(path, max_pixels=max_pixels)  # precise messages for broken structure first
        self._opened: Any = None
        if not deferred:
            self._opened = self._open_checked()

    @property
    def _hdul(self) -> Any:
        """astropy's HDU list of the file, opened on first use."""
        if self._opened is None:
            self._opened = self._open_checked()
        return self._opened

    def _open_checked(self) -> Any:
        last = self.structure[-1]
        try:
            return self._open()
        except Exception as error:  # astropy raises many kinds for what the walk lets through
            if last.trailing:
                extra = f"{last.trailing:,} bytes" if last.trailing > 0 else "the data"
                raise FormatError(f"{self.path.name}: {extra} after {last.where} are neither a FITS "
                                  f"extension nor padding (does the header of {last.where} declare its "
                                  "data's true size?)") from None
            raise FormatError(f"{self.path.name}: not a readable FITS file: {_reason(error)}") from None

    def _open(self) -> Any:
        from astropy.io import fits

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # lazily: only the HDUs the walk found are read, so bytes after the last are ignored
            return fits.open(self._source, memmap=not self._gzipped, lazy_load_hdus=True,
                             ignore_missing_simple=False, output_verify="silentfix",
                             ignore_missing_end=bool(self.structure[-1].trailing))

    def unzip_bytes(self) -> int:
        """A gzipped file whose images take more than UNZIP_ABOVE once decompressed is unzipped to disk
        and streamed from there (astropy reads a gzipped file whole); a smaller one is read whole, quicker
        than a copy. The copy's size: every HDU's header and padded data."""
        if not self._gzipped or self.pixel_bytes() <= UNZIP_ABOVE:
            return 0
        return sum(hdu.header_bytes + -(-hdu.data_bytes // BLOCK) * BLOCK for hdu in self.structure)

    def unzip(self, folder: Path) -> None:
        if not self.unzip_bytes():
            return
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / self.path.name  # the same name, which messages about the file give
        try:
            with gzip.open(self.path) as packed, copy.open("wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:  # changed since the walk read it
            copy.unlink(missing_ok=True)
            raise FormatError(f"{self.path.name}: not a readable gzipped FITS file: "
                              f"{str(error).strip() or type(error).__name__}") from None
        except BaseException:
            copy.unlink(missing_ok=True)
            raise
        if self._opened is not None:
            self._opened.close()
        self._gzipped, self._source = False, copy
        self._opened = self._open()

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()

    def planes(self) -> list[Plane]:
        from astropy.io import fits

        planes: list[Plane] = []
        if self._opened is not None:  # every HDU read first, as astropy reads it: its errors come first
            for index in range(len(self.structure)):
                self._hdu(index)
        names: dict[int, str] = {}
        for index, info in enumerate(self.structure):
            where = info.where
            # read from the file's own bytes when they are plain (app/formats/fits_header.py): the same
            # values astropy gives, in a fraction of its time. A compressed image's header is not the
            # one in the file (astropy makes it from the table's)
            raw = info.raw
            plain = plain_cards(raw) if not info.compressed else None
            header: Any = first_values(plain) if plain is not None and self._opened is None else None
            if header is not None and not (index > 0 and header.get("INHERIT") is True):
                # astropy not opened (`deferred`): its header's answers
                names[index] = str(header.get("EXTNAME", "PRIMARY" if index == 0 else ""))
                if not info.is_image:
                    continue
            else:
                hdu = self._hdu(index)
                if info.compressed and not isinstance(hdu, fits.CompImageHDU):
                    raise FormatError(f"{self.path.name}: {where}: a tile-compressed image (ZIMAGE = T) "
                                      "whose compression cards do not fit its table, so it cannot be "
                                      "decompressed")
                names[index] = hdu.name
                if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
                    continue
                header = hdu.header
            shape = _shape(header)
            if len(shape) < 2:
                continue  # no data, or a 1-D spectrum: nothing to show as an image
            width, height = shape[0], shape[1]
            check_size(self.path, where, width, height, self.max_pixels)
            merged = header
            if index > 0 and header.get("INHERIT") is True:
                # the FITS convention: an extension saying INHERIT = T takes the primary's cards it lacks
                # (not its structure); without it, its header is its own, as astropy and every reader see it
                merged = header.copy()
                for card in self._hdu(0).header.cards:
                    if card.keyword and card.keyword not in merged and _inherited(card.keyword):
                        merged.append(card)
            repairs = _odd_cards(self.structure, index)
            values, comments = harvest(merged, repairs, plain if merged is header else None)
            notes = []
            # a cube's third axis is placed by astropy's WCS, from astropy's header
            planes_of = _planes(self._hdu(index).header, shape) if len(shape) > 2 else {}
            if planes_of:
                notes.append(f"{len(shape)}-D data {'x'.join(map(str, shape))}: {planes_of['count']} planes"
                             + (f" along {planes_of['axis']}" if planes_of.get("axis") else ""))
            if repairs:
                notes.append("header repaired: " + "; ".join(repairs))
            if not planes and self.structure[-1].trailing:
                extra = self.structure[-1].trailing
                notes.append(f"{f'{extra:,} bytes' if extra > 0 else 'data'} after the last HDU "
                             f"({self.structure[-1].where}) are not a FITS extension and were ignored")
            note = "; ".join(notes)
            astropy_header = header if not isinstance(header, dict) else partial(self._header, index)
            sky, celestial = (_sky(astropy_header, width, height, raw, plain) if self.with_sky
                              else (None, None))
            if repairs or len(merged) != len(header):
                celestial = None  # the catalogued cards are not the ones it was built from
            name = str(values.get("OBJECT") or "").strip() or self.path.name
            name += f" [{names[index] or index}]" if index > 0 else ""
            planes.append(Plane(hdu=index, name=name, width=width, height=height,
                                bitpix=int(header.get("BITPIX", 0)) or None, header=values,
                                comments=comments, sky=sky, note=note, planes=planes_of,
                                celestial=celestial))
        if len(planes) == 1:
            planes[0].name = planes[0].name.removesuffix(f" [{names[planes[0].hdu]}]")
        if not planes:
            raise FormatError(f"{self.path.name}: FITS file with no 2-D image data "
                              f"({len(self.structure)} HDU(s), none with NAXIS >= 2)")
        return planes

    def pixel_bytes(self) -> int:
        return sum(hdu.image_bytes for hdu in self.structure if hdu.is_image)

    def _header(self, index: int) -> Any:
        return self._hdu(index).header

    def _hdu(self, index: int) -> Any:
        """HDU `index`, read now (lazily opened); a precise message when astropy cannot read it."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._hdul[index]
        except Exception as error:  # the walk found the HDU, astropy's reading of it fails
            raise FormatError(f"{self.path.name}: {self.structure[index].where} cannot be read: "
                              f"{_reason(error)}") from None

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        try:
            array = self._mapped(plane, index)
            if array is None:
                array = self._plane(self._hdul[plane.hdu], index)
        except ValueError as error:
            if "memmap" not in str(error):
                raise FormatError(f"{self.path.name}: HDU {plane.hdu}: pixel data cannot be read: "
                                  f"{_reason(error)}") from None
            # scaled integers (BZERO/BSCALE/BLANK) cannot be memory-mapped: read this HDU whole
            from astropy.io import fits

            with fits.open(self._source, memmap=False,
                           ignore_missing_end=bool(self.structure[-1].trailing)) as whole:
                array = self._plane(whole[plane.hdu], index)
        except MemoryError:
            raise  # the job's memory limit, not the file's fault
        except Exception as error:  # astropy raises many kinds on corrupt compressed tiles
            if self.structure[plane.hdu].compressed:
                raise compressed_unreadable(self.path.name, plane.hdu, _reason(error)) from None
            raise FormatError(f"{self.path.name}: HDU {plane.hdu}: pixel data cannot be read: "
                              f"{_reason(error)}") from None
        if array.ndim != 2:
            raise FormatError(f"{self.path.name}: HDU {plane.hdu}: expected 2-D pixel data, got shape "
                              f"{array.shape}")
        if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
            array = array.astype(np.float64)
        vips_format = _VIPS_FORMATS.get(array.dtype.newbyteorder("=").name)
        if vips_format is None:
            raise FormatError(f"{self.path.name}: HDU {plane.hdu}: unsupported pixel type {array.dtype}")
        height, width = array.shape
        if array.dtype.byteorder == ">" and array.flags.c_contiguous:
            # FITS is big-endian: let libvips swap bytes lazily while it tiles, straight from the
            # memory-mapped file, instead of copying the whole array first
            image = pyvips.Image.new_from_memory(array.data, width, height, 1, vips_format).byteswap()
        else:
            native = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
            image = pyvips.Image.new_from_memory(native.data, width, height, 1, vips_format)
        # FITS stores the bottom row first; the display shows it the usual astronomical way, north up.
        return image.flipver()


    def strips(self, plane: Plane, index: int = 0) -> PixelPlace | None:
        """Where plane `index` of `plane` lies in the file, for reading it strip by strip
        (app/tiles/stream.py), or None when its pixels cannot be (a gzipped file not unzipped): those are
        read whole by `pixels`. A tile-compressed plane is read band by band of its tiles (`compressed`)."""
        hdu = self.structure[plane.hdu]
        if self._gzipped or len(hdu.shape) < 2:
            return None
        width, height = hdu.shape[0], hdu.shape[1]
        planes = math.prod(hdu.shape[2:])
        if not 0 <= index < planes:
            raise FormatError(f"plane {index + 1} asked of an image with {planes} planes")
        if hdu.compressed:
            return PixelPlace(self._source, plane.hdu, 0, width, height, hdu.bitpix, compressed=True,
                              index=index)
        header = plane.header
        numbers = (int, float)
        bscale, bzero, blank = header.get("BSCALE", 1.0), header.get("BZERO", 0.0), header.get("BLANK")
        if not isinstance(bscale, numbers) or not isinstance(bzero, numbers) or isinstance(bscale, bool) \
                or isinstance(bzero, bool) or not (blank is None or type(blank) is int):
            return None  # odd scaling cards: astropy's own reading decides what they mean
        start = hdu.data_start + index * width * height * abs(hdu.bitpix) // 8
        return PixelPlace(self._source, plane.hdu, start, width, height, hdu.bitpix, float(bscale),
                          float(bzero), blank if hdu.bitpix > 0 else None)

    def _mapped(self, plane: Plane, index: int) -> np.ndarray | None:
        """Plane `index` of `plane` mapped from the file without astropy, when astropy is not open
        (`deferred`) and the plane's values are its bytes' own: a plain, uncompressed HDU without BSCALE,
        BZERO or BLANK, whose `data` astropy would map just so. None otherwise."""
        if self._opened is not None:
            return None
        place = self.strips(plane, index)
        if place is None or place.compressed or (place.bscale, place.bzero, place.blank) != (1.0, 0.0, None):
            return None
        return np.memmap(place.path, dtype=RAW_TYPES[place.bitpix], mode="r", offset=place.offset,
                         shape=(place.height, place.width))

    @staticmethod
    def _plane(hdu: Any, index: int) -> np.ndarray:
        """Plane `index` of the HDU's data (0 for an image of one plane), counting along NAXIS3 first:
        only that plane is read."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            naxis = int(hdu.header["NAXIS"])
            if naxis <= 2:
                if index:
                    raise FormatError(f"plane {index + 1} asked of an image with one plane")
                return np.asarray(hdu.data)
            # NumPy's order is the reverse of FITS': the last FITS axis varies slowest
            outer = tuple(int(hdu.header.get(f"NAXIS{axis}", 1)) for axis in range(naxis, 2, -1))
            if not 0 <= index < math.prod(outer):
                raise FormatError(f"plane {index + 1} asked of an image with {math.prod(outer)} planes")
            position = tuple(int(i) for i in np.unravel_index(index, outer))
            return np.asarray(hdu.section[position])


def _planes(header: Any, shape: list[int]) -> dict[str, Any]:
    """The planes of a cube: how many, and for a 3-D cube the world coordinate of each along its third
    axis (frequency, velocity, wavelength ...) with its unit, from the header's WCS when it has one."""
    count = math.prod(shape[2:])
    if count <= 1:
        return {}
    axis, unit, values = "", "", None
    if len(shape) == 3:
        axis = str(header.get("CTYPE3") or "").strip()
        try:
            from astropy.wcs import WCS

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                third = WCS(header).sub([3])
                world = third.pixel_to_world_values(np.arange(count, dtype=float))
            numbers = np.asarray(world, dtype=float).ravel()
            if numbers.size == count and np.all(np.isfinite(numbers)):
                values = [float(v) for v in numbers]
                unit = str(third.wcs.cunit[0])
        except Exception:  # no usable WCS along the third axis: the planes are counted, not placed
            values = None
    return {"count": count, "axis": axis, "unit": unit, "values": values}


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _shape(header: Any) -> list[int]:
    """NAXIS1, NAXIS2, ... as declared (for compressed HDUs astropy shows the image's own header)."""
    try:
        naxis = int(header.get("NAXIS", 0))
        shape = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    except (TypeError, ValueError):
        return []
    if any(n <= 0 for n in shape):
        return []
    # degenerate axes of length 1 beyond the first two (e.g. NAXIS3 = 1) do not make a cube
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    return shape


def _odd_cards(structure: list[Hdu], index: int) -> list[str]:
    odd = structure[index].odd if index < len(structure) else []
    return [f"{printable(keyword) or 'a blank card'}: characters outside printable ASCII shown as '?'"
            for keyword in dict.fromkeys(odd)]



def _sky(header: Any, width: int, height: int, raw: bytes = b"",
         plain: list[tuple[str, Any, str]] | None = None) -> tuple[dict[str, Any] | None, Any]:
    """Centre, corners (ICRS degrees) and pixel scale from a celestial WCS, or None; and that celestial
    WCS (astropy), or None. `raw` and `plain`: the header's bytes and their `plain_cards`, whose WCS
    WCSLIB reads alone when astropy would add nothing (`plain_wcs`); `header`, astropy's header, or what
    gives it when it is needed."""
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    celestial = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = plain_wcs(raw, plain) if plain is not None else None
            if wcs is None:
                wcs = WCS(header() if callable(header) else header, naxis=2, fix=True)
            if not wcs.has_celestial:
                return None, None
            # the two axes RA and Dec (or longitude and latitude) in that order already: `celestial` would
            # be a copy of it (a copy costs as much as the WCS)
            celestial = wcs if (wcs.naxis, wcs.wcs.lng, wcs.wcs.lat) == (2, 0, 1) else wcs.celestial
            xs = np.array([(width - 1) / 2, -0.5, width - 0.5, width - 0.5, -0.5])
            ys = np.array([(height - 1) / 2, -0.5, -0.5, height - 0.5, height - 0.5])
            ra, dec = _icrs(celestial, xs, ys)
            scale = float(np.mean(proj_plane_pixel_scales(celestial)) * 3600.0)
    except Exception:  # a broken WCS is not a reason to refuse the image; it just has no sky position
        return None, celestial
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec)) and math.isfinite(scale)):
        return None, celestial  # an all-sky map's corners lie off its projection: its coverage still counts
    return {
        "center_ra": float(ra[0]), "center_dec": float(dec[0]),
        "corners": [[float(r), float(d)] for r, d in zip(ra[1:], dec[1:], strict=True)],
        "pixel_scale_arcsec": scale,
        "frame": "icrs",
        "ctype": [str(c) for c in celestial.wcs.ctype],
    }, celestial


def icrs_equatorial(wcs: Any) -> bool:
    """Whether a celestial WCS's world coordinates are ICRS right ascension and declination already: what
    astropy's frame machinery would give back unchanged, known without asking it (which costs more)."""
    if wcs.wcs.lng < 0 or wcs.wcs.lat < 0:
        return False
    lng, lat = (str(wcs.wcs.ctype[axis])[:4].upper() for axis in (wcs.wcs.lng, wcs.wcs.lat))
    return (lng, lat) == ("RA--", "DEC-") and str(wcs.wcs.radesys).strip().upper() == "ICRS"


def _icrs(celestial: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS right ascension and declination (degrees) of 0-based pixel positions: the WCS's own world
    coordinates when they are ICRS (`icrs_equatorial`), else through astropy's frame machinery."""
    if icrs_equatorial(celestial):
        world = celestial.all_pix2world(xs, ys, 0)
        return np.mod(world[celestial.wcs.lng], 360.0), world[celestial.wcs.lat]
    coords = celestial.pixel_to_world(xs, ys).icrs
    return coords.ra.deg, coords.dec.deg


def compressed_unreadable(name: str, hdu: int, reason: str) -> FormatError:
    """Tile-compressed pixels that cannot be decompressed, in the same words whichever path reads them
    (memory-mapped here, streamed in app/tiles/stream.py)."""
    return FormatError(f"{name}: HDU {hdu}: the compressed pixel data cannot be read ({reason}): corrupt, "
                       "truncated, or changed while it was read")


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
