"""Typed dates in the catalog: `DateRange` over alternate keywords equals a brute-force filter over the
same records, whichever way each header wrote its date; number ranges over alternate keywords; the
backfill of images catalogued before typed dates."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from app.archive import Archive
from app.store.dates import header_dates
from app.store.query import And, DateRange, FieldIn, Query, any_compare, any_in_range, mjd_of
from app.store.records import ImageRecord, new_id
from app.store.sqlite import SQLiteStore
from app.store.sqlite.connection import MIGRATIONS, _statements
from tests.helpers import ingest

DATE_KEYWORDS = ("DATE-OBS", "DATE", "DATETIME", "OBSDATE", "MJD-OBS", "MJD_OBS", "MJD", "JD")
START = datetime(2024, 1, 1, tzinfo=UTC)


def record(header: dict[str, Any], *, owner: str = "", created: float = 1000.0) -> ImageRecord:
    return ImageRecord(
        id=new_id(), sha256=new_id(), hdu=0, path="/data/x.fits", name="x.fits", size=2880, owner=owner,
        provenance="batch", format="fits", width=64, height=48, bitpix=-32, header=header, created=created)


def write_date(rng: random.Random, header: dict[str, Any], keyword: str, moment: datetime, *,
               split: bool) -> datetime:
    """Write `moment` into `header` under `keyword` in one of the ways headers do; returns the moment the
    header now says (a date-only value loses its time). `split`: DATE-OBS and DATE may have their time in
    a keyword of their own (TIME-OBS, UT), and then no other date is date-only (it would take that time)."""
    if keyword in ("MJD-OBS", "MJD_OBS", "MJD"):
        header[keyword] = mjd_of(moment)
        return moment
    if keyword == "JD":
        header[keyword] = mjd_of(moment) + 2_400_000.5
        return moment
    style = rng.choice(["iso", "fraction", "zulu", "offset", "date+time" if split else "date"])
    if style in ("iso", "zulu"):
        moment = moment.replace(microsecond=0)  # written to the second
    if style == "iso":
        header[keyword] = moment.strftime("%Y-%m-%dT%H:%M:%S")
    elif style == "fraction":
        header[keyword] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
    elif style == "zulu":
        header[keyword] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    elif style == "offset":
        zone = timezone(timedelta(hours=rng.choice([-5, 2, 9])))
        header[keyword] = moment.astimezone(zone).isoformat()
    elif style == "date+time" and keyword in ("DATE-OBS", "DATE"):
        header[keyword] = moment.strftime("%Y-%m-%d")
        header["TIME-OBS" if keyword == "DATE-OBS" else "UT"] = moment.strftime("%H:%M:%S.%f")
    elif style == "date":
        header[keyword] = moment.strftime("%Y-%m-%d")
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        header[keyword] = moment.isoformat()
    return moment


def random_catalog(rng: random.Random, count: int) -> tuple[list[ImageRecord], dict[str, dict[str, float]]]:
    """Records whose headers use different date and exposure keyword variants, and for each the moments
    its header says (as MJD), from the generator."""
    records, truth = [], {}
    for index in range(count):
        header: dict[str, Any] = {"OBJECT": f"field {index}"}
        said: dict[str, float] = {}
        split = rng.random() < 0.4
        for keyword in rng.sample(DATE_KEYWORDS, rng.choice([0, 1, 1, 2, 3])):
            moment = START + timedelta(seconds=rng.randrange(3 * 365 * 86400),
                                       microseconds=rng.randrange(10**6))
            said[keyword] = mjd_of(write_date(rng, header, keyword, moment, split=split))
        if rng.random() < 0.1:
            header[rng.choice(["DATE-OBS", "DATETIME"])] = "unknown"  # not a date: never matches
        exposure = rng.choice(["EXPTIME", "EXPOSURE", None])
        if exposure:
            header[exposure] = rng.choice([rng.uniform(0, 600), rng.randrange(0, 600), "fast", True])
        item = record(header, owner=rng.choice(["", "alice", "bob"]), created=float(index))
        records.append(item)
        truth[item.id] = {k: v for k, v in said.items() if not isinstance(header.get(k), str)
                          or header[k] != "unknown"}
    return records, truth


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "catalog.sqlite")
    await opened.open()
    yield opened
    await opened.close()


async def ids(store: SQLiteStore, query: Query) -> set[str]:
    found = {image.id for image in await store.find_images(query, limit=10_000)}
    assert await store.count_images(query) == len(found)
    return found


async def test_date_ranges_equal_a_brute_force_filter(store: SQLiteStore) -> None:
    rng = random.Random(5)
    records, truth = random_catalog(rng, 300)
    await store.add_images(records)
    # the catalogued numbers are the moments the headers say
    for item in records:
        assert header_dates(item.header).keys() >= truth[item.id].keys()
        for keyword, mjd in truth[item.id].items():
            assert header_dates(item.header)[keyword] == pytest.approx(mjd, abs=1e-9)
    stored = {item.id: header_dates(item.header) for item in records}
    values = sorted(v for dates in stored.values() for v in dates.values())
    for _ in range(60):
        keywords = tuple(rng.sample(DATE_KEYWORDS, rng.randint(1, 4)))
        # bounds: absent, anywhere, or exactly a catalogued value (bounds are inclusive)
        low, high = (rng.choice([None, rng.uniform(values[0], values[-1]), rng.choice(values)]) for _ in "ab")
        if low is not None and high is not None and low > high:
            low, high = high, low
        query = DateRange(keywords, low, high)
        expected = {image_id for image_id, dates in stored.items()
                    if any(k in dates and (low is None or dates[k] >= low)
                           and (high is None or dates[k] <= high) for k in keywords)}
        assert await ids(store, query) == expected, query
        # with a permissions-like condition
        own = FieldIn("owner", ("alice",))
        assert await ids(store, And((own, query))) == {i.id for i in records if i.id in expected
                                                      and i.owner == "alice"}


async def test_alternate_keywords_are_or_ed_and_bounds_inclusive(store: SQLiteStore) -> None:
    by_date_obs = record({"DATE-OBS": "2026-03-14T21:05:00"})
    by_date = record({"DATE": "2026-03-14", "UT": "21:05:00"})
    by_mjd = record({"MJD-OBS": mjd_of(datetime(2026, 3, 14, 21, 5))})
    by_jd = record({"JD": mjd_of(datetime(2026, 3, 14, 21, 5)) + 2_400_000.5})
    later = record({"DATE-OBS": "2026-03-15T00:00:00"})
    undated = record({"DATE-OBS": "tonight", "EXPTIME": 10})
    await store.add_images([by_date_obs, by_date, by_mjd, by_jd, later, undated])
    moment = datetime(2026, 3, 14, 21, 5, tzinfo=UTC)
    exactly = mjd_of(moment)
    all_kinds = ("DATE-OBS", "DATE", "MJD-OBS", "JD")
    # a JD near 2.46 million holds its time to some 40 µs only
    second = timedelta(seconds=1)
    assert await ids(store, DateRange(all_kinds, moment - second, moment + second)) == {
        by_date_obs.id, by_date.id, by_mjd.id, by_jd.id}
    assert await ids(store, DateRange(all_kinds, moment, moment)) == {by_date_obs.id, by_date.id, by_mjd.id}
    assert await ids(store, DateRange(("DATE-OBS",), exactly, exactly)) == {by_date_obs.id}
    assert await ids(store, DateRange(("DATE", "MJD-OBS"), exactly)) == {by_date.id, by_mjd.id}
    # open ranges
    assert await ids(store, DateRange(("DATE-OBS",), start=datetime(2026, 3, 14, 22))) == {later.id}
    assert await ids(store, DateRange(("DATE-OBS",), end=datetime(2026, 3, 14, 22))) == {by_date_obs.id}
    assert await ids(store, DateRange(("DATE-OBS",))) == {by_date_obs.id, later.id}  # has a date
    # a moment after the last one and before the first: nothing
    assert await ids(store, DateRange(all_kinds, exactly + 1e-6, exactly + 0.1)) == set()
    assert await ids(store, DateRange(("NO-SUCH-KEY",), exactly - 10, exactly + 10)) == set()


async def test_deleting_an_image_removes_its_dates(store: SQLiteStore, tmp_path: Path) -> None:
    item = record({"DATE-OBS": "2026-03-14"})
    await store.add_images([item])
    await store.delete_images([item.id])
    assert await ids(store, DateRange(("DATE-OBS",))) == set()
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        assert db.execute("SELECT count(*) FROM image_dates").fetchone()[0] == 0


async def test_number_ranges_over_alternate_keywords_compare_numbers(store: SQLiteStore) -> None:
    rng = random.Random(7)
    records, _ = random_catalog(rng, 200)
    records.append(record({"EXPTIME": "100", "EXPOSURE": 5}))  # text "100" is not a number
    await store.add_images(records)

    def numbers(item: ImageRecord) -> list[float]:
        return [v for k in ("EXPTIME", "EXPOSURE") if isinstance(v := item.header.get(k), int | float)
                and not isinstance(v, bool)]

    for low, high in [(10, 100), (0, 0), (None, 50.5), (300, None), (599.0, 600)]:
        query = any_in_range(("EXPTIME", "EXPOSURE"), low, high)
        expected = {i.id for i in records if any((low is None or v >= low) and (high is None or v <= high)
                                                 for v in numbers(i))}
        assert await ids(store, query) == expected, (low, high)
    assert await ids(store, any_compare(["EXPTIME", "EXPOSURE"], "eq", 5)) == {
        i.id for i in records if 5 in numbers(i)}
    with pytest.raises(ValueError, match="at least one keyword"):
        any_in_range((), 1, 2)
    with pytest.raises(ValueError, match="not a header keyword"):
        any_compare(["EXPTIME'; DROP TABLE images; --"], "gt", 1)


def catalog_before_typed_dates(path: Path, headers: list[dict[str, Any]]) -> list[str]:
    """A catalog as ImageX left it before migration 0007, holding images with these headers."""
    import json

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied REAL NOT NULL)")
    for script in sorted(MIGRATIONS.glob("[0-9]*.sql")):
        version = int(script.name.split("_", 1)[0])
        if version >= 7:
            continue
        for statement in _statements(script.read_text()):
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, script.name))
    image_ids = []
    for header in headers:
        image_id = new_id()
        db.execute("INSERT INTO images (id, sha256, hdu, path, name, size, provenance, format, width, "
                   "height, header, comments, created) VALUES (?, ?, 0, '/x.fits', 'x', 1, 'batch', 'fits', "
                   "1, 1, ?, '{}', 0)", (image_id, new_id(), json.dumps(header)))
        image_ids.append(image_id)
    db.commit()
    db.close()
    return image_ids


async def test_images_catalogued_before_typed_dates_are_read_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = catalog_before_typed_dates(path, [
        {"DATE-OBS": "2026-03-14T21:05:00"}, {"MJD-OBS": 61113.5}, {"DATE": "14/03/96", "UT": "01:00"},
        {"OBJECT": "no date"}] + [{"DATE-OBS": f"2025-01-{day:02d}"} for day in range(1, 29)] * 100)
    store = SQLiteStore(path)
    await store.open()
    try:
        march = DateRange(("DATE-OBS", "MJD-OBS"), datetime(2026, 3, 14), datetime(2026, 3, 15))
        assert await ids(store, march) == {old[0], old[1]}
        one_am = datetime(1996, 3, 14, 1)
        assert await ids(store, DateRange(("DATE",), one_am, one_am)) == {old[2]}
        january = DateRange(("DATE-OBS",), datetime(2025, 1, 1), datetime(2025, 2, 1))
        assert await store.count_images(january) == 2800
        # idempotent: nothing is left to read, and reading again changes nothing
        assert await store._outdated("dates", 10) == []
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE images SET dates_version = 0")  # as if the date rules had changed
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await ids(store, march) == {old[0], old[1]}
        assert await store.count_images(DateRange(("DATE-OBS",))) == 2801
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM image_dates").fetchone()[0] == 2803
        assert db.execute("SELECT count(*) FROM images WHERE dates_version = 0").fetchone()[0] == 0


async def test_the_date_index_serves_the_query(store: SQLiteStore, tmp_path: Path) -> None:
    from app.store.sqlsearch import compile_query

    where, params = compile_query(DateRange(("DATE-OBS", "MJD-OBS"), 61000.0, 61100.0))
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN SELECT id FROM images WHERE {where}", params)
        plan = " ".join(row[-1] for row in rows)
    assert "image_dates_keyword" in plan, plan


async def test_ingested_fits_headers_are_found_by_date(archive: Archive,
                                                      write_fits: Callable[..., Path]) -> None:
    files = [
        write_fits("iso.fits", DATE_OBS="2026-03-14T21:05:00.25Z"),
        write_fits("split.fits", DATE_OBS="2026-03-14", TIME_OBS="22:00:00"),
        write_fits("mjd.fits", MJD_OBS=61113.95),  # 22:48 UTC
        write_fits("old.fits", DATE_OBS="14/03/96"),
    ]
    jobs = await ingest(archive, *files)
    assert [job.state for job in jobs] == ["done"] * 4, [job.error for job in jobs]
    found = await archive.store.find_images(DateRange(("DATE-OBS", "MJD-OBS"), datetime(2026, 3, 14, 21),
                                                      datetime(2026, 3, 14, 22, 30)))
    assert sorted(image.path.rsplit("/", 1)[-1] for image in found) == ["iso.fits", "split.fits"]
    found = await archive.store.find_images(DateRange(("DATE-OBS", "MJD-OBS"), datetime(2026, 3, 14)))
    assert len(found) == 3
    [old] = await archive.store.find_images(DateRange(("DATE-OBS",), end=datetime(2000, 1, 1)))
    assert old.header["DATE-OBS"] == "14/03/96"  # the raw header is kept as written
