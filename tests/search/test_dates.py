"""Dates in headers, however they were written, read into one sortable number (MJD, UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from app.search.dates import date_range, parse_bound
from app.store.dates import header_dates, parse_date, parse_day_number, parse_time
from app.store.query import DateRange, mjd_of

MJD_2026_03_14 = 61113.0  # 2026-03-14 00:00 UTC
SECOND = 1 / 86400


def at(*parts: int, micro: int = 0) -> float:
    return mjd_of(datetime(*parts, microsecond=micro, tzinfo=UTC))


def test_the_mjd_epoch_and_a_known_day() -> None:
    assert mjd_of(datetime(1858, 11, 17, tzinfo=UTC)) == 0.0
    assert mjd_of(datetime(2000, 1, 1, 12)) == 51544.5  # J2000.0; a naive datetime is UTC
    assert at(2026, 3, 14) == MJD_2026_03_14


@pytest.mark.parametrize(("text", "expected", "has_time"), [
    ("2026-03-14T21:05:00", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14T21:05", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14 21:05:00", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14T21:05:00.5", at(2026, 3, 14, 21, 5, 0, micro=500_000), True),
    ("2026-03-14T21:05:00.123456789", at(2026, 3, 14, 21, 5, 0, micro=123_456), True),  # to the µs
    ("2026-03-14T21:05:00Z", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14T23:05:00+02:00", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14T23:05:00+0200", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14T23:05:00+02", at(2026, 3, 14, 21, 5), True),
    ("2026-03-14T16:35:00-04:30", at(2026, 3, 14, 21, 5), True),
    ("2026-03-15T01:00:00+05:00", at(2026, 3, 14, 20, 0), True),  # the offset crosses midnight
    ("2016-12-31T23:59:60", at(2017, 1, 1), True),  # a leap second
    ("  2026-03-14  ", MJD_2026_03_14, False),
    ("2026-03-14", MJD_2026_03_14, False),
    ("14/03/96", at(1996, 3, 14), False),  # the FITS form before 2000: DD/MM/YY, 19YY
    ("01/01/00", at(1900, 1, 1), False),
])
def test_date_formats(text: str, expected: float, has_time: bool) -> None:
    mjd, timed = parse_date(text)
    assert mjd == pytest.approx(expected, abs=1e-9) and timed is has_time


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", "'yesterday' is not a date: expected YYYY-MM-DD"),
    ("", "'' is not a date"),
    ("2026-3-14", "is not a date: expected"),
    ("2026-02-30", "'2026-02-30' is not a date: day is out of range for month"),
    ("2026-13-01", "month must be in 1..12"),
    ("0000-01-01", "year 0 is out of range"),
    ("2026-03-14T25:00:00", "hours run 00-23"),
    ("2026-03-14T21:61:00", "minutes 00-59"),
    ("2026-03-14T21:05:61", "seconds 00-60"),
    ("2026-03-14T21:05:00+15:00", "the UTC offset +15:00 is out of range"),
    ("2026-03-14T21:05:00 UTC", "is not a date"),
    ("32/01/96", "day is out of range for month"),
    ("'; DROP TABLE images; --", "is not a date"),
])
def test_bad_dates_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_date(text)


def test_old_fits_dates_only_where_asked() -> None:
    with pytest.raises(ValueError, match="is not a date"):
        parse_date("14/03/96", old_fits=False)


@pytest.mark.parametrize(("text", "micros"), [
    ("21:05:00", (21 * 3600 + 5 * 60) * 1_000_000),
    ("21:05", (21 * 3600 + 5 * 60) * 1_000_000),
    ("9:05:30.25", (9 * 3600 + 5 * 60 + 30) * 1_000_000 + 250_000),
])
def test_times_of_day(text: str, micros: int) -> None:
    assert parse_time(text) == micros


@pytest.mark.parametrize("text", ["21h05m", "25:00:00", "noon", "21:5"])
def test_bad_times_of_day(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text)


@pytest.mark.parametrize(("keyword", "value", "expected"), [
    ("MJD", 61113.25, 61113.25),
    ("MJD-OBS", 61113, 61113.0),
    ("MJD_OBS", "61113.5", 61113.5),
    ("MJDOBS", 61113.5, 61113.5),
    ("JD", 2461113.5, 61113.0),
    ("JD-OBS", 2461114.0, 61113.5),
])
def test_day_numbers(keyword: str, value: object, expected: float) -> None:
    assert parse_day_number(keyword, value) == expected


@pytest.mark.parametrize(("keyword", "value", "message"), [
    ("MJD-OBS", "soon", "is not a number"),
    ("MJD-OBS", True, "is not a number"),
    ("MJD-OBS", 1e12, "is not a date between the years 1 and 9999"),
    ("MJD-OBS", float("nan"), "is not a date"),
    ("EXPTIME", 30.0, "is not an MJD or JD keyword"),
])
def test_bad_day_numbers(keyword: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_day_number(keyword, value)


def test_header_dates_reads_every_date_like_keyword() -> None:
    header = {
        "DATE-OBS": "2026-03-14", "TIME-OBS": "21:05:00",  # a date and its time keyword
        "DATE": "2026-03-15T08:00:00Z",
        "DATE-END": "2026-03-14", "TIME-END": "22:00:00",
        "MJD-OBS": 61113.25, "JD": 2461113.5,
        "HIERARCH ESO OBS START": "2026-03-14T20:00:00",  # any keyword holding an ISO date
        "OLDDATE": "14/03/96",  # the old FITS form, in a keyword naming DATE
        "FILTNAME": "14/03/96",  # ... but not elsewhere
        "EXPTIME": 30.0, "OBJECT": "M31", "SIMPLE": True, "MJDFLAG": True, "MJD-AVG": "n/a",
        "COMMENT": ["2026-03-14"],
    }
    assert header_dates(header) == pytest.approx({
        "DATE-OBS": at(2026, 3, 14, 21, 5),
        "DATE": at(2026, 3, 15, 8),
        "DATE-END": at(2026, 3, 14, 22),
        "MJD-OBS": 61113.25,
        "JD": 61113.0,
        "HIERARCH ESO OBS START": at(2026, 3, 14, 20),
        "OLDDATE": at(1996, 3, 14),
    }, abs=1e-9)


@pytest.mark.parametrize(("header", "expected"), [
    ({"DATE": "2026-03-14", "UT": "21:05:00"}, at(2026, 3, 14, 21, 5)),
    ({"DATE-OBS": "2026-03-14", "UTC": "21:05:00.5"}, at(2026, 3, 14, 21, 5, 0, micro=500_000)),
    ({"DATE-OBS": "2026-03-14", "UTSTART": "01:00"}, at(2026, 3, 14, 1)),
    ({"DATE-OBS": "2026-03-14", "TIME-OBS": "not a time", "UT": "02:00:00"}, at(2026, 3, 14, 2)),
    ({"DATE-OBS": "2026-03-14", "TIME-OBS": 21.5}, at(2026, 3, 14)),  # a number is no time of day
    ({"DATE-OBS": "2026-03-14T10:00:00", "TIME-OBS": "21:05:00"}, at(2026, 3, 14, 10)),  # full wins
    ({"DATE-OBS": "14/03/96", "TIME-OBS": "21:05:00"}, at(1996, 3, 14, 21, 5)),
    ({"DATE": "2026-03-14", "TIME-OBS": "21:05:00"}, at(2026, 3, 14)),  # TIME-OBS goes with DATE-OBS
    ({"DATE-END": "2026-03-14", "TIME-END": "22:00", "UT": "21:00"}, at(2026, 3, 14, 22)),
])
def test_a_date_completed_by_its_time_keyword(header: dict[str, object], expected: float) -> None:
    [value] = [v for k, v in header_dates(header).items() if k.startswith("DATE")]
    assert value == pytest.approx(expected, abs=1e-9)


def test_bounds_take_whole_days_or_moments() -> None:
    assert parse_bound("2026-03-14", end=False) == MJD_2026_03_14
    end = parse_bound("2026-03-14", end=True)
    assert end == parse_date("2026-03-14T23:59:59.999999")[0]  # the day's last microsecond, inclusive
    assert end < MJD_2026_03_14 + 1
    assert parse_bound("2026-03-14T21:05:00Z", end=True) == at(2026, 3, 14, 21, 5)


def test_date_range_from_form_values() -> None:
    query = date_range(" DATE-OBS, DATE ,MJD-OBS,DATE", "2026-03-01", "2026-03-31")
    assert query.keywords == ("DATE-OBS", "DATE", "MJD-OBS")
    assert query.bounds() == (at(2026, 3, 1), parse_date("2026-03-31T23:59:59.999999")[0])
    assert date_range("DATE-OBS", "", None) == DateRange(("DATE-OBS",))
    assert date_range("DATE-OBS", "2026-03-01T12:00:00+01:00", None).bounds() == (at(2026, 3, 1, 11), None)


@pytest.mark.parametrize(("keywords", "start", "end", "message"), [
    ("", "2026-03-01", None, "date_keywords: name at least one header keyword"),
    (" , ,", None, None, "date_keywords: name at least one header keyword"),
    ("DATE-OBS'; DROP TABLE images; --", None, None, "date_keywords: not a header keyword"),
    ('{"$where": "1"}', None, None, "date_keywords: not a header keyword"),
    ("DATE%", None, None, "date_keywords: not a header keyword"),
    (",".join(f"K{i}" for i in range(21)), None, None, "date_keywords: at most 20 keywords"),
    ("DATE-OBS", "March", None, "date_from: 'March' is not a date"),
    ("DATE-OBS", None, "2026-02-30", "date_to: '2026-02-30' is not a date: day is out of range"),
    ("DATE-OBS", "14/03/96", None, "date_from: '14/03/96' is not a date"),  # ambiguous in a form
    ("DATE-OBS", "2026-04-01", "2026-03-01", "date_from (2026-04-01) is after date_to (2026-03-01)"),
    ("DATE-OBS", "2026-03-01T12:00:00", "2026-03-01T11:59:59", "is after date_to"),
])
def test_bad_form_values_say_which_field_and_why(keywords: str, start: str | None, end: str | None,
                                                 message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        date_range(keywords, start, end)


def test_the_query_node_checks_itself() -> None:
    with pytest.raises(ValueError, match="at least one keyword"):
        DateRange(())
    with pytest.raises(ValueError, match="not a header keyword"):
        DateRange(("DATE') OR 1=1 --",))
    with pytest.raises(ValueError, match="start of a date range is after its end"):
        DateRange(("DATE-OBS",), datetime(2026, 3, 2), 61000.0)
    with pytest.raises(ValueError, match="not a date"):
        DateRange(("DATE-OBS",), float("inf"))
    assert DateRange(("DATE-OBS",), datetime(2026, 3, 14, tzinfo=UTC), 61113.0).bounds() == (61113.0, 61113.0)
