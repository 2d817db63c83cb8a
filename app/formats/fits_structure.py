"""The structure of a FITS file read from its header cards alone, before astropy opens it.

astropy reads what the FITS standard allows and more, but a hostile or broken structural card makes it fail
with Python's own words ("unsupported operand type(s) for +: 'int' and 'str'" for `NAXIS1 = 'abc'`), loop
over a huge NAXIS, or seek past the end of the file. This walk reads each header's cards block by block,
checks the cards that give the file its shape (BITPIX, NAXIS, NAXISn, PCOUNT, GCOUNT, BSCALE, BLANK and, for
tile-compressed images, ZBITPIX, ZNAXIS, ZNAXISn, ZCMPTYPE) and the size each HDU's data declares, and
raises FormatError naming the file, the HDU and the card. Nothing but the headers is read.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.exceptions import FormatError
from app.formats.base import check_size

BLOCK = 2880
CARD = 80
MAX_NAXIS = 999  # the FITS standard's limit
BITPIX_VALUES = (8, 16, 32, 64, -32, -64)
COMPRESSIONS = ("RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2", "PLIO_1", "HCOMPRESS_1", "NOCOMPRESS")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?")
_UNPRINTABLE = re.compile(rb"[^\x20-\x7e]")
_LIMITS = {8: (0, 255), 16: (-(2 ** 15), 2 ** 15 - 1), 32: (-(2 ** 31), 2 ** 31 - 1),
           64: (-(2 ** 63), 2 ** 63 - 1)}


class _Stream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


@dataclass
class Hdu:
    """One header and data unit as its cards declare it."""

    index: int
    where: str  # "HDU 1 (SCI)", for messages
    bitpix: int
    shape: list[int]  # NAXIS1, NAXIS2, ... (for a compressed image: ZNAXIS1, ...)
    data_bytes: int  # bytes the data occupies in the file (compressed bytes for .fz)
    image_bytes: int  # bytes of the image once decompressed: what its pixels cost
    compressed: bool = False
    is_image: bool = False  # an image HDU (primary, IMAGE extension or tile-compressed), not a table
    cards: dict[str, str] = field(default_factory=dict, repr=False)
    odd: list[str] = field(default_factory=list)  # cards with bytes FITS does not allow, for the note
    trailing: int = 0  # bytes after this, the last HDU, that are neither an extension nor zero padding
    header_bytes: int = 0  # the header's blocks, up to and including END's
    raw: bytes = field(default=b"", repr=False)  # the header's cards before END, as the file holds them
    data_start: int = 0  # where its data begins in the file (decompressed, for a gzipped file)


def walk(path: Path, *, max_pixels: int) -> list[Hdu]:
    """Every HDU of `path` (plain or gzipped FITS) as its headers declare it; FormatError for the first
    structural card that is missing or wrong, a header without END, data cut short by the end of the file,
    or an image beyond `max_pixels`."""
    name = path.name
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if gzipped:
            try:
                with gzip.open(raw) as handle:
                    return _walk(handle, name, path, max_pixels, size=None)
            except (OSError, EOFError, zlib.error) as error:  # a damaged or cut-short gzip stream
                raise FormatError(f"{name}: not a readable gzipped FITS file: "
                                  f"{str(error).strip() or type(error).__name__}") from None
        return _walk(raw, name, path, max_pixels, size=path.stat().st_size)


def _walk(handle: _Stream, name: str, path: Path, max_pixels: int, *, size: int | None) -> list[Hdu]:
    hdus: list[Hdu] = []
    offset = 0
    while True:
        start = offset
        first = handle.read(CARD)
        if not hdus and len(first) < CARD:
            raise FormatError(f"{name}: HDU 0: the file ends inside the first header card ({len(first)} "
                              "bytes)")
        if len(first) < CARD or (hdus and not first.startswith(b"XTENSION= ")):
            if hdus and (first + handle.read(BLOCK - CARD)).strip(b"\0"):  # not just zero padding
                hdus[-1].trailing = size - start if size is not None else -1
            break  # the end of the file, or bytes after the last HDU, which are ignored
        where = f"HDU {len(hdus)}"
        cards, odd, header_bytes, raw = _header(handle, first, name, where)
        offset = start + header_bytes
        hdu = _hdu(cards, len(hdus), name, where)
        hdu.odd, hdu.header_bytes, hdu.raw, hdu.data_start = odd, header_bytes, raw, offset
        if hdu.is_image and len(hdu.shape) >= 2:
            check_size(path, hdu.where, hdu.shape[0], hdu.shape[1], max_pixels)
        padded = -(-hdu.data_bytes // BLOCK) * BLOCK
        if size is not None:
            if offset + hdu.data_bytes > size:
                raise FormatError(f"{name}: {hdu.where} is truncated: its header declares {_declared(hdu)} "
                                  f"but only {max(0, size - offset):,} bytes of data follow the header")
            handle.seek(offset + padded)
        elif not _skip(handle, hdu.data_bytes):
            raise FormatError(f"{name}: {hdu.where} is truncated: its header declares {_declared(hdu)} but "
                              "the file ends before them")
        else:
            _skip(handle, padded - hdu.data_bytes)  # the last HDU's padding may be missing
        offset += padded
        hdus.append(hdu)
    return hdus


def _declared(hdu: Hdu) -> str:
    """What an HDU's header says its data holds: pixels for an image, bytes for anything else."""
    if hdu.compressed or not hdu.shape or hdu.data_bytes != hdu.image_bytes:
        return f"{hdu.data_bytes:,} bytes of data"
    return f"{'x'.join(map(str, hdu.shape))} pixels ({hdu.data_bytes:,} bytes)"


def _skip(handle: _Stream, count: int) -> bool:
    """Read past `count` bytes of a stream that cannot seek cheaply; False when it ends first."""
    while count > 0:
        chunk = handle.read(min(count, 1 << 20))
        if not chunk:
            return False
        count -= len(chunk)
    return True


def _header(handle: _Stream, first: bytes, name: str,
            where: str) -> tuple[dict[str, str], list[str], int, bytes]:
    """The cards of one header up to END (keyword -> raw value text; the first of a repeated keyword),
    the keywords of cards holding bytes outside printable ASCII, the header's length in bytes and its
    cards before END as they are in the file."""
    cards: dict[str, str] = {}
    odd: list[str] = []
    block = first + handle.read(BLOCK - CARD)
    blocks: list[bytes] = []
    length = 0
    while True:
        if len(block) < BLOCK:
            raise FormatError(f"{name}: {where}: the header has no END card (the file ends "
                              f"{length + len(block):,} bytes into it)")
        length += BLOCK
        unusual = _UNPRINTABLE.search(block) is not None
        for position in range(0, BLOCK, CARD):
            card = block[position:position + CARD]
            keyword = card[:8].decode("latin-1").rstrip()
            if keyword == "END" and not card[8:].strip():
                return cards, odd, length, b"".join(blocks) + block[:position]
            if unusual and _UNPRINTABLE.search(card):
                odd.append(printable(keyword))
            if keyword not in cards:  # astropy takes a value without the "= " indicator as text: so do we
                cards[keyword] = card[10 if card[8:10] == b"= " else 8:].decode("latin-1")
        blocks.append(block)
        block = handle.read(BLOCK)


def _is_image(cards: dict[str, str], index: int) -> bool:
    return index == 0 or _string(cards.get("XTENSION", "")) == "IMAGE"


def _hdu(cards: dict[str, str], index: int, name: str, where: str) -> Hdu:
    extname = _string(cards.get("EXTNAME", ""))
    if extname:
        where += f" ({extname})"

    def integer(keyword: str, *, default: int | None = None, low: int | None = None,
                high: int | None = None, allowed: tuple[int, ...] = ()) -> int:
        return _integer(cards, keyword, f"{name}: {where}", default=default, low=low, high=high,
                        allowed=allowed)

    if index == 0 and _value(cards.get("SIMPLE", "")) != "T":
        raise FormatError(f"{name}: {where}: SIMPLE = {_shown(cards.get('SIMPLE', ''))} where a FITS file "
                          "has SIMPLE = T")
    bitpix = integer("BITPIX", allowed=BITPIX_VALUES)
    naxis = integer("NAXIS", low=0, high=MAX_NAXIS)
    shape = [integer(f"NAXIS{axis}", low=0) for axis in range(1, naxis + 1)]
    pcount = integer("PCOUNT", default=0, low=0) if index else 0
    gcount = integer("GCOUNT", default=1, low=0) if index else 1
    data_bytes = abs(bitpix) // 8 * gcount * (pcount + math.prod(shape)) if naxis else 0
    hdu = Hdu(index=index, where=where, bitpix=bitpix, shape=shape, data_bytes=data_bytes,
              image_bytes=abs(bitpix) // 8 * math.prod(shape) if naxis else 0, cards=cards)
    if _string(cards.get("XTENSION", "")) == "BINTABLE" and _logical(cards.get("ZIMAGE", "")):
        hdu.compressed = True
        hdu.bitpix = integer("ZBITPIX", allowed=BITPIX_VALUES)
        znaxis = integer("ZNAXIS", low=1, high=MAX_NAXIS)
        hdu.shape = [integer(f"ZNAXIS{axis}", low=1) for axis in range(1, znaxis + 1)]
        for axis in range(1, znaxis + 1):
            if f"ZTILE{axis}" in cards:
                integer(f"ZTILE{axis}", low=1)
        hdu.image_bytes = abs(hdu.bitpix) // 8 * math.prod(hdu.shape)
        _check_row_width(cards, shape, f"{name}: {where}")
        method = _string(cards.get("ZCMPTYPE", ""))
        if "ZCMPTYPE" not in cards:
            raise FormatError(f"{name}: {where}: a tile-compressed image without ZCMPTYPE")
        if method not in COMPRESSIONS:
            raise FormatError(f"{name}: {where}: ZCMPTYPE = {_shown(cards['ZCMPTYPE'])} is not a compression "
                              f"FITS defines ({', '.join(COMPRESSIONS)})")
    hdu.is_image = hdu.compressed or _is_image(cards, index)
    if hdu.is_image:
        _check_scaling(cards, hdu.bitpix, f"{name}: {where}")
    return hdu


_TFORM = re.compile(r"(\d*)([LXBIJKAEDCMPQ])")
_WIDTHS = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}


def _check_row_width(cards: dict[str, str], shape: list[int], where: str) -> None:
    """A binary table's row (NAXIS1 bytes) must hold exactly its columns (TFORMn): decompressing a table
    whose rows say otherwise reads past its data."""
    fields = _integer(cards, "TFIELDS", where, low=1, high=999)
    width = 0
    for column in range(1, fields + 1):
        keyword = f"TFORM{column}"
        if keyword not in cards:
            raise FormatError(f"{where}: the required card {keyword} is missing (TFIELDS = {fields} "
                              "declares it)")
        match = _TFORM.match(_string(cards[keyword]).strip())
        if match is None:
            raise FormatError(f"{where}: {keyword} = {_shown(cards[keyword])} is not a binary table column "
                              "format")
        repeat = int(match.group(1) or 1)
        kind = match.group(2)
        width += -(-repeat // 8) if kind == "X" else repeat * _WIDTHS[kind]
    if shape and shape[0] != width:
        raise FormatError(f"{where}: NAXIS1 = {shape[0]:,} but its columns (TFORMn) make rows of "
                          f"{width:,} bytes")


def _check_scaling(cards: dict[str, str], bitpix: int, where: str) -> None:
    if "BSCALE" in cards:
        scale = _number(cards, "BSCALE", where)
        if scale == 0:
            raise FormatError(f"{where}: BSCALE = 0 would make every pixel the same value (BZERO); "
                              "a pixel scale must not be zero")
    if "BZERO" in cards:
        _number(cards, "BZERO", where)
    if "BLANK" in cards and bitpix > 0:
        low, high = _LIMITS[bitpix]
        _integer(cards, "BLANK", where, low=low, high=high, range_reason=f"a BITPIX {bitpix} pixel")


def _integer(cards: dict[str, str], keyword: str, where: str, *, default: int | None = None,
             low: int | None = None, high: int | None = None, allowed: tuple[int, ...] = (),
             range_reason: str = "") -> int:
    if keyword not in cards:
        if default is not None:
            return default
        raise FormatError(f"{where}: the required card {keyword} is missing" + _context(cards, keyword))
    text = _value(cards[keyword])
    if not _INTEGER.fullmatch(text):
        raise FormatError(f"{where}: {keyword} = {_shown(cards[keyword])} is not a whole number")
    value = int(text)
    if allowed and value not in allowed:
        raise FormatError(f"{where}: {keyword} = {value} is not one of {', '.join(map(str, allowed))}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
        reason = f" for {range_reason}" if range_reason else ""
        raise FormatError(f"{where}: {keyword} = {value:,} must be {bounds}{reason}")
    return value


def _number(cards: dict[str, str], keyword: str, where: str) -> float:
    text = _value(cards[keyword])
    if not _NUMBER.fullmatch(text):
        raise FormatError(f"{where}: {keyword} = {_shown(cards[keyword])} is not a number")
    value = float(text.replace("D", "E").replace("d", "e"))
    if not math.isfinite(value):
        raise FormatError(f"{where}: {keyword} = {text} is not a finite number")
    return value


def _context(cards: dict[str, str], keyword: str) -> str:
    """Why a missing NAXISn or ZNAXISn is required: the card that asks for it."""
    match = re.fullmatch(r"(Z?NAXIS)\d+", keyword)
    if match and match.group(1) in cards:
        return f" ({match.group(1)} = {_value(cards[match.group(1)])} declares it)"
    return ""


def _value(text: str) -> str:
    """A card's value without its comment: a quoted string keeps its quotes. Only spaces are stripped
    (str.strip would take control characters for spaces, where astropy sees a broken value)."""
    text = text.strip(" ")
    if text.startswith("'"):
        end = 1
        while True:
            end = text.find("'", end)
            if end < 0:
                return text
            if text[end + 1:end + 2] == "'":
                end += 2
                continue
            return text[:end + 1]
    return text.split("/", 1)[0].strip(" ")


def _string(text: str) -> str:
    value = _value(text)
    if value.startswith("'"):
        inner = value[1:-1] if value.endswith("'") and len(value) > 1 else value[1:]
        return inner.replace("''", "'").rstrip()
    return value


def _logical(text: str) -> bool:
    return _value(text) == "T"


def _shown(text: str) -> str:
    """A value for a message: printable ASCII only, and short."""
    clean = printable(_value(text))
    return clean[:40] + ("..." if len(clean) > 40 else "")


def printable(text: str) -> str:
    """`text` with every character outside printable ASCII shown as `?`."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)

