"""The neutral query form every catalog adapter translates: a small tree over header keywords and record
fields, with the date, cone and text conditions of the search form."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

# The neutral query form: a small tree over header keywords. Adapters translate it; nothing from the
# browser is ever passed to a store as query text.
CompareOp = Literal["eq", "ne", "lt", "le", "gt", "ge"]
COMPARE_OPS: tuple[CompareOp, ...] = ("eq", "ne", "lt", "le", "gt", "ge")
Scalar = str | int | float | bool
# FITS names, HIERARCH names (spaces, dots) and DICOM sequence items (`Sequence[0].Keyword`, nested too);
# never a quote, `$` or backslash, so that an adapter can write a checked keyword into its own path syntax
_KEYWORD = re.compile(r"^[A-Za-z0-9_\-. \[\]]{1,128}$")


def check_keyword(keyword: str) -> str:
    """Header keywords in queries: letters, digits, `_-. []`, at most 128 of them."""
    if not _KEYWORD.fullmatch(keyword):
        raise ValueError(f"not a header keyword: {keyword!r}")
    return keyword


@dataclass(frozen=True)
class Compare:
    """`header[keyword] <op> value`; numbers compare as numbers, strings as strings."""

    keyword: str
    op: CompareOp
    value: Scalar

    def __post_init__(self) -> None:
        check_keyword(self.keyword)
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison {self.op!r}")


RECORD_FIELDS = ("owner", "visibility", "provenance", "format", "sha256", "id", "name")


@dataclass(frozen=True)
class FieldIn:
    """A record field (not a header keyword) equal to one of `values` (or none of them, with `negate`);
    used for permissions."""

    field: str
    values: tuple[str, ...]
    negate: bool = False

    def __post_init__(self) -> None:
        if self.field not in RECORD_FIELDS:
            raise ValueError(f"not a record field: {self.field!r}")


@dataclass(frozen=True)
class And:
    parts: tuple[Query, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Query, ...]


MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
MICROS_PER_DAY = 86_400_000_000
MAX_DATE_KEYWORDS = 20


def mjd_from_micros(micros: int) -> float:
    """Microseconds since the MJD epoch as an MJD: every path to a date's number goes through here, so the
    same moment always gets the same float (inclusive bounds then match exactly)."""
    day, rest = divmod(micros, MICROS_PER_DAY)
    return day + rest / MICROS_PER_DAY


def mjd_of(value: datetime | float) -> float:
    """A moment as a Modified Julian Date (days since 1858-11-17 00:00 UTC); a naive datetime is UTC."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return mjd_from_micros((moment - MJD_EPOCH) // timedelta(microseconds=1))
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a date: {value!r}")
    return number


@dataclass(frozen=True)
class DateRange:
    """Any of `keywords` holds a date (as normalised at ingest) within `start`..`end`, both inclusive and
    either optional (neither: the image has a date in one of them). Bounds are UTC datetimes (naive ones
    are read as UTC) or MJD numbers. Alternate keywords are OR-ed: DATE-OBS, DATE and MJD-OBS together
    find an image whichever of them its header used."""

    keywords: tuple[str, ...]
    start: datetime | float | None = None
    end: datetime | float | None = None

    def __post_init__(self) -> None:
        if not self.keywords:
            raise ValueError("a date range needs at least one keyword")
        if len(self.keywords) > MAX_DATE_KEYWORDS:
            raise ValueError(f"a date range takes at most {MAX_DATE_KEYWORDS} keywords")
        for keyword in self.keywords:
            check_keyword(keyword)
        low, high = self.bounds()
        if low is not None and high is not None and low > high:
            raise ValueError("the start of a date range is after its end")

    def bounds(self) -> tuple[float | None, float | None]:
        """The bounds as MJD numbers."""
        return (None if self.start is None else mjd_of(self.start),
                None if self.end is None else mjd_of(self.end))


ConeMode = Literal["overlaps", "contains"]
CONE_MODES: tuple[ConeMode, ...] = ("overlaps", "contains")


@dataclass(frozen=True)
class Cone:
    """Images whose sky footprint (the quadrilateral of its WCS corners) overlaps the cone of `radius_deg`
    around (`ra`, `dec`), ICRS degrees; with mode `contains`, images whose footprint holds that point
    (`radius_deg` ignored). Images without a celestial WCS never match."""

    ra: float
    dec: float
    radius_deg: float
    mode: ConeMode = "overlaps"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ra) and math.isfinite(self.dec) and math.isfinite(self.radius_deg)):
            raise ValueError("cone coordinates and radius must be finite numbers")
        if not -90 <= self.dec <= 90:
            raise ValueError(f"Dec {self.dec} is outside -90..+90 degrees")
        if self.mode not in CONE_MODES:
            raise ValueError(f"unknown cone mode {self.mode!r}")
        if self.mode == "overlaps" and not 0 < self.radius_deg <= 180:
            raise ValueError(f"cone radius {self.radius_deg} must be above 0 and at most 180 degrees")


TextMode = Literal["contains", "prefix"]
TEXT_MODES: tuple[TextMode, ...] = ("contains", "prefix")
MAX_TEXT = 200


@dataclass(frozen=True)
class TextMatch:
    """`header[keyword]` is text that contains `text` (or starts with it, mode `prefix`), ignoring case.
    The text matches literally: `%`, `_`, quotes and brackets are ordinary characters."""

    keyword: str
    text: str
    mode: TextMode = "contains"

    def __post_init__(self) -> None:
        check_keyword(self.keyword)
        if self.mode not in TEXT_MODES:
            raise ValueError(f"unknown text match {self.mode!r}")
        if not self.text:
            raise ValueError("a text match needs some text")
        if len(self.text) > MAX_TEXT:
            raise ValueError(f"search text is limited to {MAX_TEXT} characters")


Query = Compare | FieldIn | And | Or | DateRange | Cone | TextMatch

ORDER_FIELDS = ("created", "name", "owner", "size", "format")


@dataclass(frozen=True)
class Order:
    """How results are sorted: by a record field, or by the first present of header `keywords` (with
    `dates`, by the keywords' normalised dates; with `numbers`, by numeric values only). Images without a
    value sort last either way."""

    field: str = "created"
    keywords: tuple[str, ...] = ()
    dates: bool = False
    numbers: bool = False
    descending: bool = True

    def __post_init__(self) -> None:
        if not self.keywords and self.field not in ORDER_FIELDS:
            raise ValueError(f"cannot sort by {self.field!r}")
        for keyword in self.keywords:
            check_keyword(keyword)


def keyword_range(keyword: str, low: Scalar | None = None, high: Scalar | None = None) -> Query:
    """`low <= header[keyword] <= high`, either bound optional."""
    parts: list[Query] = []
    if low is not None:
        parts.append(Compare(keyword, "ge", low))
    if high is not None:
        parts.append(Compare(keyword, "le", high))
    if not parts:
        raise ValueError("a range needs at least one bound")
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def any_compare(keywords: Sequence[str], op: CompareOp, value: Scalar) -> Query:
    """`header[k] <op> value` for any of the alternate `keywords` (EXPTIME or EXPOSURE ...)."""
    if not keywords:
        raise ValueError("a condition needs at least one keyword")
    parts = tuple(Compare(keyword, op, value) for keyword in dict.fromkeys(keywords))
    return parts[0] if len(parts) == 1 else Or(parts)


def any_in_range(keywords: Sequence[str], low: Scalar | None = None, high: Scalar | None = None) -> Query:
    """`low <= header[k] <= high` for any of the alternate `keywords`; either bound optional. With numbers,
    only numeric values match (a keyword holding text never does)."""
    if not keywords:
        raise ValueError("a range needs at least one keyword")
    parts = tuple(keyword_range(keyword, low, high) for keyword in dict.fromkeys(keywords))
    return parts[0] if len(parts) == 1 else Or(parts)
