"""Byte-level edits of FITS files for tests of hostile input: a card replaced, added or blanked in the
header of a chosen HDU, leaving every other byte where it was."""

from __future__ import annotations

import io

from astropy.io import fits

CARD = 80


def card(keyword: str, value: str) -> bytes:
    """A fixed-format card `KEYWORD = value` of 80 bytes (the value as written, right-aligned)."""
    return f"{keyword:<8}= {value:>20}".ljust(CARD).encode("latin-1")


def header_start(data: bytes, hdu: int) -> int:
    with fits.open(io.BytesIO(data)) as hdus:
        return int(hdus.fileinfo(hdu)["hdrLoc"])


def edited(data: bytes, keyword: str, raw: bytes | None, *, hdu: int = 0) -> bytes:
    """`data` with the card `keyword` of header `hdu` replaced by `raw` (80 bytes), or written over END
    (END moving one card on, within the header's blank space) when absent; None blanks it."""
    body = bytearray(data)
    position = header_start(data, hdu)
    name = ""
    while position < len(body):
        name = bytes(body[position:position + 8]).decode("latin-1").rstrip()
        if name in (keyword, "END"):
            break
        position += CARD
    replacement = raw if raw is not None else b" " * CARD
    assert len(replacement) == CARD
    body[position:position + CARD] = replacement
    if name == "END":
        body[position + CARD:position + 2 * CARD] = b"END".ljust(CARD)
    return bytes(body)
