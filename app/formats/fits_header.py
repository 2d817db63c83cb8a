"""A plain FITS header read without astropy's card machinery: the values and comments of its cards, and
its celestial WCS built by WCSLIB from the header's own bytes.

astropy types each card through properties that consult its configuration at every step, and
`astropy.wcs.WCS` parses a header three more times before WCSLIB reads it: for a small image that is most
of what opening it costs (about 2 ms of a header's 2.5 ms), and a batch catalogued from its headers
(app/ingest/catalogue.py) pays it for every file. Here a header whose every card has one of FITS' plain
forms (a keyword of capitals, digits, `-` and `_`; a quoted string without quotes in it, `T` or `F`, an
integer, a real, or nothing; commentary) is typed by one regular expression per card, and its WCS is
WCSLIB's reading of the same bytes, fixed as astropy fixes it.

Anything else returns None and astropy reads the header as before: a CONTINUE'd long string, HIERARCH, a
record-valued card, a string holding a quote, a complex or oddly spaced number; for the WCS, SIP or
lookup-table distortions and PV cards (which astropy may read as TPV). Where both read a header they give
the same values (tests/formats/test_fits_header.py compares them on every form, and on random cards).
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from app.formats.fits_structure import printable
from app.store.records import HeaderValue

CARD = 80
LIST_KEYWORDS = {"COMMENT", "HISTORY"}
# where the text of cards with a blank keyword (commentary, FITS 4.4.2.4) is kept: not a keyword FITS
# allows, so it can never meet a real card of that name
BLANK_CARDS = "(blank)"
_ALLOWED = re.compile(r"[!-~][ -~]*")  # a keyword kept: printable ASCII (HIERARCH keywords hold spaces)
# the keyword field of a plain card: a standard keyword, left-justified
_KEYWORD = re.compile(r"([A-Z0-9_-]{1,8}) *")
# the keywords of commentary cards, which have no value
COMMENTARY = {"", "COMMENT", "HISTORY"}
_VALUE = re.compile(
    r" *(?:'(?P<string>[ -&(-~]*)' *|(?P<logical>[TF]) *|(?P<integer>[+-]?\d+) *"
    r"|(?P<real>[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?) *)?(?:/ *(?P<comment>.*))?")
# a string astropy reads as a record-valued card (`DP1 = 'AXIS.1: 1'`), or might: left to it
_RECORD = re.compile(r"[a-zA-Z_]\w*(\.\w+)*:")
# cards that make astropy's WCS more than WCSLIB's reading: SIP and lookup-table distortions, and PV
# cards (a TAN header with them is read as TPV, pre-2012 SCAMP's convention)
_DISTORTION = re.compile(r"(A|B|AP|BP)_|CPDIS|CQDIS|CPERR|CQERR|D2IM|DP\d|DQ\d|PV|AXISCORR")


def plain_cards(raw: bytes) -> list[tuple[str, Any, str]] | None:
    """Each card of `raw` (a header's cards before END) as (keyword, value, comment), as astropy's Card
    gives them (a string's trailing spaces stripped; None for a card without a value); None when any card
    is not in a plain form."""
    if len(raw) % CARD or not raw.isascii():
        return None
    text = raw.decode("ascii")
    if not text.isprintable():
        return None
    cards: list[tuple[str, Any, str]] = []
    for start in range(0, len(text), CARD):
        card = text[start:start + CARD]
        field = card[:8]
        if field.strip():
            named = _KEYWORD.fullmatch(field)
            if named is None:
                return None
            keyword = named[1]
        else:
            keyword = ""
        if keyword in COMMENTARY:
            cards.append((keyword, card[8:].rstrip(), ""))
            continue
        if card[8:10] != "= " or keyword in ("CONTINUE", "HIERARCH"):
            return None
        found = _VALUE.fullmatch(card, 10)
        if found is None:
            return None
        value: Any
        if (string := found["string"]) is not None:
            if _RECORD.match(string.lstrip()):
                return None
            value = string.rstrip()
        elif found["logical"] is not None:
            value = found["logical"] == "T"
        elif found["integer"] is not None:
            value = int(found["integer"])
        elif found["real"] is not None:
            value = float(found["real"].replace("D", "E").replace("d", "e"))
        else:
            value = None
        cards.append((keyword, value, (found["comment"] or "").rstrip()))
    return cards


def first_values(cards: list[tuple[str, Any, str]]) -> dict[str, Any]:
    """Each keyword's value as astropy's header answers for it: its first card's."""
    values: dict[str, Any] = {}
    for keyword, value, _ in cards:
        values.setdefault(keyword, value)
    return values


def plain_wcs(raw: bytes, cards: list[tuple[str, Any, str]], naxis: int = 2) -> Any | None:
    """The WCS `astropy.wcs.WCS(header, naxis=naxis, fix=True)` builds from the header of these cards
    (`plain_cards` of `raw`), read by WCSLIB alone; None when the header holds a distortion astropy
    reads itself (`_DISTORTION`, or a CTYPE naming SIP). A header without WCS cards gets the identity, as
    astropy gives it."""
    from astropy.wcs import WCS, NoWcsKeywordsFoundError, Wcsprm
    from astropy.wcs.wcs import WCSBase

    for keyword, value, _ in cards:
        if _DISTORTION.match(keyword) or (keyword.startswith("CTYPE") and "SIP" in str(value).upper()):
            return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            core = Wcsprm(header=raw, key=" ", relax=True, warnings=False)
        except NoWcsKeywordsFoundError:  # as astropy does: the identity
            core = Wcsprm(header=None, key=" ", relax=True)
        core = core.sub(naxis)
        wcs = WCS(naxis=naxis)
        WCSBase.__init__(wcs, None, (None, None), core, (None, None))
        wcs.naxis = core.naxis
        wcs.fix(translate_units="")
        wcs.wcs.set()
        # the image's axis lengths, as astropy takes them from the header
        lengths = first_values(cards)
        shape: list[Any] = []
        while f"NAXIS{len(shape) + 1}" in lengths:
            shape.append(lengths[f"NAXIS{len(shape) + 1}"])
        wcs._naxis = [*shape, 0, 0][:max(2, len(shape))]
    return wcs


def harvest(header: Any, repairs: list[str] | None = None, plain: list[tuple[str, Any, str]] | None = None,
            ) -> tuple[dict[str, HeaderValue], dict[str, str]]:
    """Every card as a typed value; COMMENT and HISTORY collected as lists, and so is the commentary of
    cards with a blank keyword (under BLANK_CARDS); comments kept apart. A repeated keyword keeps its first
    value under its own name (the one FITS readers honour) and each later one as `KEYWORD.2`, `KEYWORD.3`
    (names a query can use). A card astropy cannot parse is read as fixed as it can be, else kept as its
    text; a keyword FITS does not allow is left out. Each such repair is described in `repairs`. `plain`:
    the same header's cards as `plain_cards` read them, used instead of astropy's."""
    values: dict[str, HeaderValue] = {}
    comments: dict[str, str] = {}
    for keyword, value, comment in plain if plain is not None else _cards(header, repairs):
        if not keyword:
            text = str(value or "").rstrip() if isinstance(value, str) else ""
            if text:
                blank = values.setdefault(BLANK_CARDS, [])
                if isinstance(blank, list):
                    blank.append(text)
            continue
        if keyword in LIST_KEYWORDS:
            existing = values.setdefault(keyword, [])
            if isinstance(existing, list):
                existing.append(str(value))
            continue
        if keyword in values:
            # a repeated keyword: FITS readers honour the first; the others are kept beside it
            count = 2
            while f"{keyword}.{count}" in values:
                count += 1
            keyword = f"{keyword}.{count}"
        values[keyword] = _typed(value)
        if comment:
            comments[keyword] = str(comment)
    return values, comments


def _cards(header: Any, repairs: list[str] | None) -> Iterator[tuple[str, Any, str]]:
    """Each card of an astropy header as (keyword, value, comment); a keyword FITS does not allow, or a
    value that cannot be read, is left out and said in `repairs`."""
    for card in header.cards:
        keyword = str(card.keyword)
        if not keyword:
            yield "", card.value, ""
            continue
        if not _ALLOWED.fullmatch(keyword):
            if repairs is not None:
                repairs.append(f"card {printable(keyword)!r} left out (a keyword FITS does not allow)")
            continue
        read = _card_value(card, keyword, repairs)
        if read is not None:
            yield keyword, read[0], read[1]


def _card_value(card: Any, keyword: str, repairs: list[str] | None) -> tuple[Any, str] | None:
    """A card's value and comment; an unparsable card fixed the way astropy's verify('fix') does, or
    None when even that cannot read it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):  # astropy raises many kinds for an unparsable card
            return card.value, card.comment
        try:
            card.verify("silentfix")
            value, comment = card.value, card.comment
        except Exception:  # beyond astropy's repair: the card is left out
            if repairs is not None:
                repairs.append(f"{keyword}: a value that cannot be read, left out")
            return None
    if repairs is not None:
        repairs.append(f"{keyword}: not a valid FITS value, read as {printable(str(value))[:40]!r}")
    return value, comment


def _typed(value: Any) -> HeaderValue:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, str):
        return value.rstrip()
    if value is None or type(value).__name__ == "Undefined":
        return None
    return str(value)
