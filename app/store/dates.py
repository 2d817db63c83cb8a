"""Dates in headers, normalised to one sortable number so that a date range finds an image whichever way
its header recorded the time.

Headers say when in many ways: ISO date-times (`2026-03-14T21:05:00`, with fractional seconds, with `Z`
or an offset), date-only strings (`2026-03-14`, the old FITS `14/03/96`), a date and a separate time keyword
(DATE-OBS + TIME-OBS, DATE + UT), or numbers (MJD, MJD-OBS, JD). At ingest every date-like keyword of an
image is read into a Modified Julian Date (UTC, kept to the microsecond) and catalogued beside the raw
header; the `DateRange` query node compares those numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date

from app.store.query import MICROS_PER_DAY, mjd_from_micros

# bump when the rules below change: images catalogued under older rules are read again at startup
DATES_VERSION = 1

_ORDINAL_MJD0 = date(1858, 11, 17).toordinal()
_END_OF_DAY = MICROS_PER_DAY - 1
_JD_MINUS_MJD = 2_400_000.5
# what `datetime` can hold: years 1-9999
_MJD_MIN = date(1, 1, 1).toordinal() - _ORDINAL_MJD0
_MJD_MAX = date(9999, 12, 31).toordinal() - _ORDINAL_MJD0 + 1
_ISO = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?")
_OLD_FITS = re.compile(r"(?P<day>\d{2})/(?P<month>\d{2})/(?P<year>\d{2})")
_TIME = re.compile(r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?")
# MJD, MJD-OBS, MJD_OBS, MJDOBS, MJD-AVG ...; JD, JD-OBS ...
_DAY_NUMBER = re.compile(r"(?P<kind>M?JD)(?:[-_ ]?[A-Z0-9]+)?", re.IGNORECASE)
_EXPECTED = "expected YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.fff]] with an optional Z or ±hh:mm, or DD/MM/YY"
# time keywords that complete a date-only value, tried in order after the one named like it (DATE-OBS:
# TIME-OBS, DATE-END: TIME-END, DATE: TIME)
_START_TIMES = ("UT", "UTC", "UTSTART", "UT-START", "UTC-OBS", "UT-OBS")
_TIME_PARTNERS = {"DATE": ("UT", "UTC"), **{name: ("TIME-OBS", *_START_TIMES) for name in (
    "DATE-OBS", "DATE_OBS", "DATEOBS", "OBSDATE", "OBS-DATE")}}


def parse_date(text: str, *, old_fits: bool = True) -> tuple[float, bool]:
    """`text` as an MJD (UTC), and whether it gave a time of day. Raises ValueError saying why not.
    `old_fits`: also accept the pre-2000 FITS form DD/MM/YY (years 1900-1999)."""
    micros, has_time = parse_moment(text, old_fits=old_fits)
    return mjd_from_micros(micros), has_time


def parse_moment(text: str, *, old_fits: bool = True) -> tuple[int, bool]:
    """As `parse_date`, in whole microseconds since the MJD epoch."""
    value = text.strip()
    match = _ISO.fullmatch(value)
    if match is None and old_fits:
        old = _OLD_FITS.fullmatch(value)
        if old is not None:
            day = _calendar_day(text, 1900 + int(old["year"]), int(old["month"]), int(old["day"]))
            return day * MICROS_PER_DAY, False
    if match is None:
        raise ValueError(f"{text!r} is not a date: {_EXPECTED}")
    day = _calendar_day(text, int(match["year"]), int(match["month"]), int(match["day"]))
    if match["hour"] is None:
        return day * MICROS_PER_DAY, False
    micros = _time_of_day(text, match["hour"], match["minute"], match["second"], match["fraction"])
    return day * MICROS_PER_DAY + micros - _zone_micros(text, match["zone"]), True


def parse_time(text: str) -> int:
    """A time of day `hh:mm[:ss[.fff]]` (a TIME-OBS or UT value) in microseconds since midnight."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time of day: expected hh:mm[:ss[.fff]]")
    return _time_of_day(text, match["hour"], match["minute"], match["second"], match["fraction"])


def parse_day_number(keyword: str, value: object) -> float:
    """The MJD of a day-number keyword's value: MJD* keywords hold an MJD, JD* keywords a Julian Date."""
    kind = _DAY_NUMBER.fullmatch(keyword)
    if kind is None:
        raise ValueError(f"{keyword} is not an MJD or JD keyword")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{keyword} = {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{keyword} = {value!r} is not a number") from None
    mjd = number - _JD_MINUS_MJD if kind["kind"].upper() == "JD" else number
    if not (math.isfinite(mjd) and _MJD_MIN <= mjd < _MJD_MAX):
        raise ValueError(f"{keyword} = {value!r} is not a date between the years 1 and 9999")
    return mjd


def header_dates(header: Mapping[str, object]) -> dict[str, float]:
    """Every date-like keyword of `header` with its MJD: text values that are ISO dates (any keyword) or
    old FITS dates (keywords naming DATE), a date-only value completed by its time keyword (DATE-OBS +
    TIME-OBS, DATE + UT), and MJD/JD numbers. Values that are not dates are left out."""
    dates: dict[str, float] = {}
    for keyword, value in header.items():
        if isinstance(value, str):
            try:
                micros, has_time = parse_moment(value, old_fits="DATE" in keyword.upper())
            except ValueError:
                if _DAY_NUMBER.fullmatch(keyword):
                    _add_day_number(dates, keyword, value)
                continue
            if not has_time:
                micros += _partner_time(header, keyword)
            dates[keyword] = mjd_from_micros(micros)
        elif isinstance(value, int | float) and _DAY_NUMBER.fullmatch(keyword):
            _add_day_number(dates, keyword, value)  # refuses booleans
    return dates


def _add_day_number(dates: dict[str, float], keyword: str, value: object) -> None:
    try:
        dates[keyword] = parse_day_number(keyword, value)
    except ValueError:
        pass


def _partner_time(header: Mapping[str, object], keyword: str) -> int:
    """The time of day (microseconds) a separate keyword gives a date-only value; 0 when none does."""
    upper = keyword.upper()
    partners = [upper.replace("DATE", "TIME")] if "DATE" in upper else []
    partners.extend(_TIME_PARTNERS.get(upper, ()))
    for partner in partners:
        value = header.get(partner)
        if isinstance(value, str):
            try:
                return parse_time(value)
            except ValueError:
                continue
    return 0


def _calendar_day(text: str, year: int, month: int, day: int) -> int:
    try:
        return date(year, month, day).toordinal() - _ORDINAL_MJD0
    except ValueError as error:
        raise ValueError(f"{text!r} is not a date: {error}") from None


def _time_of_day(text: str, hour: str, minute: str, second: str | None, fraction: str | None) -> int:
    h, m, s = int(hour), int(minute), int(second or 0)
    if h > 23 or m > 59 or s > 60:  # 60: a leap second
        raise ValueError(f"{text!r} is not a time: hours run 00-23, minutes 00-59, seconds 00-60")
    micros = int((fraction or "")[:6].ljust(6, "0"))  # kept to the microsecond
    return ((h * 60 + m) * 60 + s) * 1_000_000 + micros


def _zone_micros(text: str, zone: str | None) -> int:
    """A UTC offset (`Z`, `+02`, `+0200`, `-05:30`) in microseconds."""
    if zone is None or zone == "Z":
        return 0
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 14 or minutes > 59:
        raise ValueError(f"{text!r} is not a date: the UTC offset {zone} is out of range")
    sign = -1 if zone[0] == "-" else 1
    return sign * (hours * 60 + minutes) * 60 * 1_000_000
