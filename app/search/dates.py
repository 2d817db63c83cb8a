"""Date ranges typed into the search form, as the catalog's typed dates (app/store/dates.py) compare them:
a calendar date is its whole day in UTC, a date-time that moment."""

from __future__ import annotations

from app.store.dates import parse_moment
from app.store.query import MAX_DATE_KEYWORDS, MICROS_PER_DAY, DateRange, check_keyword, mjd_from_micros

_END_OF_DAY = MICROS_PER_DAY - 1


def parse_bound(text: str, *, end: bool) -> float:
    """A range bound from a form: a calendar date (the whole day, in UTC: its first microsecond for a
    start, its last for an end) or an ISO date-time (that moment)."""
    micros, has_time = parse_moment(text, old_fits=False)
    return mjd_from_micros(micros + _END_OF_DAY if end and not has_time else micros)


def date_range(keywords: str, start: str | None, end: str | None) -> DateRange:
    """The form values `date_keywords` (comma-separated alternates), `date_from` and `date_to` (either may
    be empty) as a query node. Raises ValueError with a message naming the field at fault."""
    names = [name.strip() for name in keywords.split(",") if name.strip()]
    if not names:
        raise ValueError("date_keywords: name at least one header keyword, e.g. DATE-OBS,DATE,MJD-OBS")
    if len(names) > MAX_DATE_KEYWORDS:
        raise ValueError(f"date_keywords: at most {MAX_DATE_KEYWORDS} keywords")
    for name in names:
        try:
            check_keyword(name)
        except ValueError as error:
            raise ValueError(f"date_keywords: {error}") from None
    low, high = date_bounds(start, end)
    return DateRange(tuple(dict.fromkeys(names)), low, high)


def date_bounds(start: str | None, end: str | None,
                fields: tuple[str, str] = ("date_from", "date_to")) -> tuple[float | None, float | None]:
    """A date range's bounds as typed (either may be empty) as MJD numbers: the start of `start`'s day and
    the end of `end`'s for calendar dates. Raises ValueError naming the field (`fields`) at fault."""
    bounds: list[float | None] = []
    for field, text, is_end in ((fields[0], start, False), (fields[1], end, True)):
        if text is None or not text.strip():
            bounds.append(None)
            continue
        try:
            bounds.append(parse_bound(text, end=is_end))
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise ValueError(f"{fields[0]} ({start}) is after {fields[1]} ({end})")
    return low, high
