"""The embedded SQLite catalog: migrations, WAL, image records and the neutral query form."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.exceptions import Conflict, StoreError
from app.store import open_store
from app.store.query import And, Compare, Or, Query, keyword_range
from app.store.records import ImageRecord, new_id
from app.store.sqlite import SQLiteStore
from app.store.sqlite.connection import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]


def image(sha256: str = "", hdu: int = 0, *, created: float = 1000.0, **header: Any) -> ImageRecord:
    """A catalog record with these header cards (`DATE_OBS` is written as `DATE-OBS`)."""
    return ImageRecord(
        id=new_id(), sha256=sha256 or new_id(), hdu=hdu, path=f"/data/{sha256 or 'x'}.fits", name="x.fits",
        size=2880, owner="", provenance="batch", format="fits", width=64, height=48, bitpix=-32,
        header={key.replace("_", "-"): value for key, value in header.items()}, created=created)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def applied(path: Path) -> list[tuple[int, str, float]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT version, name, applied FROM schema_migrations ORDER BY version"))


# migrations and the file -----------------------------------------------------------------------------

async def test_migrations_create_the_schema_on_a_fresh_file(tmp_path):
    path = tmp_path / "deeper" / "catalog.sqlite"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    assert {"images", "jobs", "schema_migrations"} <= tables(path)
    scripts = sorted(MIGRATIONS.glob("[0-9]*.sql"))
    assert scripts, "no migration scripts found"
    assert [(version, name) for version, name, _ in applied(path)] == [
        (int(script.name.split("_", 1)[0]), script.name) for script in scripts]


async def test_a_catalog_of_migration_13_is_rebuilt_whole(tmp_path, monkeypatch):
    """0014 rebuilds the images table (the same content once per owner): every record, its dates, cells
    and keyword counts survive, the search indexes come back, and each image's path is its first
    location."""
    from app.store.footprint import footprint_cells
    from app.store.query import Cone, DateRange, FieldIn
    from app.store.records import ImageLocation, SearchElement
    from app.store.sqlite import connection as adapter
    from tests.store.examples import sky_at

    old = tmp_path / "migrations-0013"
    old.mkdir()
    for script in MIGRATIONS.glob("[0-9]*.sql"):
        if int(script.name.split("_", 1)[0]) <= 13:
            (old / script.name).write_text(script.read_text())
    records = [image("a", 0, created=1.0, DATE_OBS="2024-01-01T00:00:00", EXPTIME=1.0),
               image("a", 1, created=1.0, EXPTIME=2.0), image("b", created=2.0, OBJECT="M31")]
    records[2].sky = sky_at(150.0, 2.0)
    records[2].owner = "u1"
    # the rows as today's code writes them, copied into a catalog that stopped at migration 13
    fresh = SQLiteStore(tmp_path / "fresh.sqlite")
    await fresh.open()
    await fresh.add_images(records)
    await fresh.add_element(SearchElement("exp", "number", "Exposure", ["EXPTIME"]))
    await fresh.close()
    path = tmp_path / "catalog.sqlite"
    monkeypatch.setattr(SQLiteStore, "migrations", (old, ".sql"))
    store = SQLiteStore(path)
    await store.open()
    assert await store.migration_version() == 13
    await store.close()
    monkeypatch.undo()
    with sqlite3.connect(path) as db:
        db.execute("ATTACH ? AS fresh", (str(tmp_path / "fresh.sqlite"),))
        columns = ", ".join(row[1] for row in db.execute("PRAGMA main.table_info(images)"))
        db.execute(f"INSERT INTO images ({columns}) SELECT {columns} FROM fresh.images")
        for table in ("image_dates", "image_cells", "header_keywords", "search_elements"):
            db.execute(f"INSERT INTO main.{table} SELECT * FROM fresh.{table}")
        db.execute(adapter.sqlsearch.index_sql("EXPTIME"))

    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.migration_version() == max(
            int(script.name.split("_", 1)[0]) for script in MIGRATIONS.glob("[0-9]*.sql"))
        assert [await store.get_image(record.id) for record in records] == records
        assert await store.indexed_keywords() == ["EXPTIME"]
        assert await store.keyword_counts() == {"DATE-OBS": 1, "EXPTIME": 2, "OBJECT": 1}
        assert [r.id for r in await store.find_images(DateRange(("DATE-OBS",), start=60000.0))] == [
            records[0].id]
        assert footprint_cells(records[2].sky)
        assert [r.id for r in await store.find_images(Cone(150.0, 2.0, 0.01))] == [records[2].id]
        assert await store.image_locations([records[2].id]) == [
            ImageLocation(records[2].id, records[2].path, 2.0)]
        # the same file, another owner: now a record of its own; the same owner: still a conflict
        await store.add_images([image("b", created=3.0)])
        with pytest.raises(Conflict):
            await store.add_images([image("a", 0)])
        # deleting still cascades to the dates, cells and locations
        await store.delete_images([record.id for record in records])
        assert await store.count_images(FieldIn("owner", ("u1",))) == 0
        with sqlite3.connect(path) as db:
            for table in ("image_dates", "image_cells", "image_locations"):
                ids = {row[0] for row in db.execute(f"SELECT image_id FROM {table}")}
                assert not ids & {record.id for record in records}, table
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        await store.close()


async def test_reopening_applies_nothing_and_keeps_the_records(tmp_path):
    path = tmp_path / "catalog.sqlite"
    first = SQLiteStore(path)
    await first.open()
    record = image("abc", EXPTIME=30.0)
    await first.add_images([record])
    await first.close()
    before = applied(path)

    again = SQLiteStore(path)
    await again.open()
    try:
        assert applied(path) == before  # same rows, same "applied" stamps
        assert (await again.get_image(record.id)).header == {"EXPTIME": 30.0}
        assert await again.count_images() == 1
    finally:
        await again.close()


async def test_catalog_is_in_wal_mode(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


OPENER = """
import asyncio, sys, time
from pathlib import Path
from app.store.records import NewJob
from app.store.sqlite import SQLiteStore

async def main(folder, name, files):
    print("ready", flush=True)
    for n in range(int(files)):
        while not (Path(folder) / f"go{n}").exists():
            time.sleep(0.0005)
        store = SQLiteStore(Path(folder) / f"catalog{n}.sqlite")
        await store.open()
        await store.enqueue([NewJob(key=name, path=name)])
        await store.close()
        print("opened", n, flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def test_processes_opening_fresh_catalogs_together_all_succeed(tmp_path):
    """`imagex serve` and `imagex ingest` started at once on a new data folder: nobody crashes on
    "database is locked" while the file is being made, and the schema is made once. The processes open
    a series of new files in step, so the race is run many times."""
    files, processes = 30, 4
    openers = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), f"p{n}", str(files)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in range(processes)]
    try:
        for opener in openers:
            assert opener.stdout.readline().strip() == "ready"
        for n in range(files):
            (tmp_path / f"go{n}").touch()
            said = [opener.stdout.readline().strip() for opener in openers]
            if said != [f"opened {n}"] * processes:  # one crashed: let the others finish
                for rest in range(n + 1, files):
                    (tmp_path / f"go{rest}").touch()
                break
        errors = [opener.communicate(timeout=60)[1] for opener in openers]
    finally:
        for opener in openers:
            if opener.poll() is None:
                opener.kill()
                opener.wait()
    assert [opener.returncode for opener in openers] == [0] * processes, "\n".join(errors)
    for n in range(files):
        path = tmp_path / f"catalog{n}.sqlite"
        assert len(applied(path)) == len(list(MIGRATIONS.glob("[0-9]*.sql")))
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            keys = sorted(row[0] for row in db.execute("SELECT key FROM jobs"))
        assert keys == [f"p{n}" for n in range(processes)]


async def test_open_store_url_and_errors(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'cat.sqlite'}")
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "cat.sqlite"
    with pytest.raises(StoreError, match="unknown store URL"):
        open_store("postgres://localhost/x")


async def test_a_closed_store_says_so_and_closing_twice_is_safe(tmp_path):
    store = SQLiteStore(tmp_path / "catalog.sqlite")
    with pytest.raises(StoreError, match="not open"):
        await store.count_images()
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.find_images()


async def test_a_catalog_that_cannot_be_created_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = SQLiteStore(blocker / "catalog.sqlite")
    with pytest.raises(StoreError, match="cannot open the catalog"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.count_images()


# images ----------------------------------------------------------------------------------------------

async def test_image_round_trip(store):
    record = image("sum1", 1, OBJECT="M 31", EXPTIME=120.5, NAXIS=2, SIMPLE=True, HISTORY=["a", "b"],
                   BLANKCARD=None)
    record.comments = {"EXPTIME": "seconds"}
    record.sky = {"center_ra": 10.68, "center_dec": 41.27, "corners": [[1, 2], [3, 4]]}
    record.display = {"interval": "zscale", "levels": 3}
    record.note = "ok"
    record.job_id = "job1"
    await store.add_images([record])
    assert await store.get_image(record.id) == record
    assert await store.get_image("no-such-id") is None


async def test_a_file_with_several_hdus_is_found_by_checksum_in_hdu_order(store):
    await store.add_images([image("same", 2), image("same", 1), image("other", 0)])
    assert [r.hdu for r in await store.images_with_checksum("same")] == [1, 2]
    assert await store.images_with_checksum("missing") == []


@pytest.mark.parametrize("batch", [
    pytest.param(lambda: [image("new1"), image("taken", 0), image("new2")], id="clash-with-catalog"),
    pytest.param(lambda: [image("fresh", 0), image("fresh", 1), image("fresh", 0)], id="clash-within-batch"),
])
async def test_add_images_is_all_or_nothing(store, batch):
    await store.add_images([image("taken", 0)])
    with pytest.raises(Conflict):
        await store.add_images(batch())
    assert await store.count_images() == 1
    assert [r.sha256 for r in await store.find_images()] == ["taken"]
    # the store is still usable after the rolled-back transaction
    await store.add_images([image("later")])
    assert await store.count_images() == 2


async def test_same_checksum_with_another_hdu_is_not_a_conflict(store):
    await store.add_images([image("s", 0)])
    await store.add_images([image("s", 1)])
    assert await store.count_images() == 2


async def test_find_images_newest_first_with_offset_and_limit(store):
    records = [image(f"sum{n}", created=1000.0 + n, N=n) for n in range(7)]
    await store.add_images(records[3:])
    await store.add_images(records[:3])
    newest_first = [6, 5, 4, 3, 2, 1, 0]
    assert [r.header["N"] for r in await store.find_images()] == newest_first
    assert [r.header["N"] for r in await store.find_images(offset=2, limit=3)] == newest_first[2:5]
    assert [r.header["N"] for r in await store.find_images(offset=5, limit=50)] == newest_first[5:]
    assert await store.find_images(offset=7) == []
    assert await store.count_images() == 7


# the neutral query form ------------------------------------------------------------------------------

CATALOG = [
    dict(sha256="m31", OBJECT="M31", EXPTIME=9, FILTER="r", AIRMASS=1.05, SIMPLE=True, PROC=False),
    dict(sha256="m33", OBJECT="M33", EXPTIME=10, FILTER="g", AIRMASS=1.5, SIMPLE=True, PROC=True),
    dict(sha256="ngc", OBJECT="NGC 224", EXPTIME=100, FILTER="R", AIRMASS=2.0, SIMPLE=True, PROC=False),
    dict(sha256="flat", OBJECT="flat", EXPTIME=100.0, FILTER="r", FLTR="r"),
    dict(sha256="quote", OBJECT="O'Brien \"the\" 50%_off", EXPTIME=1.5, DATE_OBS="2026-03-14T21:05:00"),
    dict(sha256="like", OBJECT="O'Brien xthex 50xxoff", EXPTIME=-3),
    dict(sha256="hier", **{"HIERARCH ESO DET DIT": 2.5, "ESO.TEL": "UT1"}),
]


@pytest.fixture
async def catalog(store):
    await store.add_images([image(**cards) for cards in CATALOG])
    return store


QUERIES: list[tuple[str, Query, set[str]]] = [
    ("string equality", Compare("OBJECT", "eq", "M31"), {"m31"}),
    ("string equality is case-sensitive", Compare("FILTER", "eq", "R"), {"ngc"}),
    ("string inequality skips images without the keyword",
     Compare("FILTER", "ne", "r"), {"m33", "ngc"}),
    ("integer equality", Compare("EXPTIME", "eq", 10), {"m33"}),
    ("an integer equals the same float", Compare("EXPTIME", "eq", 100), {"ngc", "flat"}),
    ("float equality", Compare("AIRMASS", "eq", 1.5), {"m33"}),
    ("numbers compare as numbers, not text", Compare("EXPTIME", "gt", 9), {"m33", "ngc", "flat"}),
    ("less than", Compare("EXPTIME", "lt", 10), {"m31", "quote", "like"}),
    ("range both ends inclusive", keyword_range("EXPTIME", 9, 10), {"m31", "m33"}),
    ("range 9..99 excludes 100", keyword_range("EXPTIME", 9, 99.9), {"m31", "m33"}),
    ("range low only", keyword_range("EXPTIME", low=10), {"m33", "ngc", "flat"}),
    ("range high only", keyword_range("EXPTIME", high=1.5), {"quote", "like"}),
    ("float range", keyword_range("AIRMASS", 1.0, 1.6), {"m31", "m33"}),
    ("string range (ISO dates)", keyword_range("DATE-OBS", "2026-03-14", "2026-03-15"), {"quote"}),
    ("bool true", Compare("PROC", "eq", True), {"m33"}),
    ("bool false", Compare("PROC", "eq", False), {"m31", "ngc"}),
    ("and", And((Compare("FILTER", "eq", "r"), keyword_range("EXPTIME", 50, 200))), {"flat"}),
    ("or of alternate keywords", Or((Compare("FILTER", "eq", "r"), Compare("FLTR", "eq", "r"))),
     {"m31", "flat"}),
    ("or of alternate keywords, second only", Or((Compare("FILTER", "eq", "g"), Compare("FLTR", "eq", "g"))),
     {"m33"}),
    ("nested or inside and", And((Compare("SIMPLE", "eq", True),
                                  Or((Compare("OBJECT", "eq", "M31"), Compare("OBJECT", "eq", "NGC 224"))))),
     {"m31", "ngc"}),
    ("empty and matches all", And(()), {c["sha256"] for c in CATALOG}),
    ("empty or matches none", Or(()), set()),
    ("quotes and wildcards are literal", Compare("OBJECT", "eq", "O'Brien \"the\" 50%_off"), {"quote"}),
    ("percent is not a wildcard", Compare("OBJECT", "eq", "%"), set()),
    ("underscore is not a wildcard", Compare("OBJECT", "eq", "M3_"), set()),
    ("HIERARCH keyword with spaces", Compare("HIERARCH ESO DET DIT", "gt", 2), {"hier"}),
    ("keyword with a dot is one key, not a path", Compare("ESO.TEL", "eq", "UT1"), {"hier"}),
    ("keyword with a dash", Compare("DATE-OBS", "eq", "2026-03-14T21:05:00"), {"quote"}),
    ("missing keyword matches nothing", Compare("NOSUCH", "eq", "M31"), set()),
]


@pytest.mark.parametrize(("query", "expected"), [(q, e) for _, q, e in QUERIES],
                         ids=[name for name, _, _ in QUERIES])
async def test_query(catalog, query, expected):
    found = await catalog.find_images(query, limit=100)
    assert {r.sha256 for r in found} == expected
    assert await catalog.count_images(query) == len(expected)


@pytest.mark.parametrize(("query", "expected"), [
    (Compare("EXPTIME", "gt", 5), set()),
    (Compare("EXPTIME", "lt", 5), {"one"}),
    (Compare("EXPTIME", "eq", "fast"), {"text"}),
    (Compare("EXPTIME", "eq", 1), {"one"}),
    (Compare("EXPTIME", "eq", True), {"true"}),
    (Compare("OBJECT", "gt", 0), set()),
])
async def test_values_of_another_type_do_not_match(store, query, expected):
    """A header written carelessly (EXPTIME = 'fast', EXPTIME = T): a numeric search must not match text
    or logical values, and a logical search must not match the number 1."""
    await store.add_images([image("text", EXPTIME="fast", OBJECT="M31"), image("true", EXPTIME=True),
                            image("one", EXPTIME=1)])
    assert {r.sha256 for r in await store.find_images(query)} == expected


@pytest.mark.parametrize("keyword", [
    'OBJECT"\') OR 1=1 --',
    'OBJECT" OR 1=1',
    "OBJECT'",
    "OBJECT;DROP TABLE images",
    "$.OBJECT",
    "",
    "X" * 129,
    "OBJECT\n",
    "OBJ*",
])
async def test_keywords_that_are_not_header_keywords_are_refused(catalog, keyword):
    with pytest.raises(ValueError, match="not a header keyword"):
        Compare(keyword, "eq", "M31")
    with pytest.raises(ValueError):
        keyword_range(keyword, 1, 2)
    assert await catalog.count_images() == len(CATALOG)


async def test_a_sequence_item_keyword_is_read_as_one_name_not_as_an_array_index(store):
    """`Seq[0].Code` (a DICOM sequence item, flattened by the reader) names a header entry of its own: the
    brackets are not JSON path syntax."""
    await store.add_images([image("item", **{"Seq[0].Code": "113072", "Seq": "plain"}),
                            image("other", Seq="x")])
    assert [r.sha256 for r in await store.find_images(Compare("Seq[0].Code", "eq", "113072"))] == ["item"]
    assert await store.find_images(Compare("Seq[0].Code", "eq", "plain")) == []


async def test_injection_in_values_is_inert(catalog):
    hostile = "M31' OR 1=1 --"
    assert await catalog.find_images(Compare("OBJECT", "eq", hostile)) == []
    assert await catalog.count_images(Compare("OBJECT", "eq", 'M31") OR 1=1 --')) == 0
    assert await catalog.count_images() == len(CATALOG)


@pytest.mark.parametrize("op", ["like", "in", "==", ""])
def test_unknown_comparisons_are_refused(op):
    with pytest.raises(ValueError, match="unknown comparison"):
        Compare("OBJECT", op, "x")  # type: ignore[arg-type]


def test_a_range_needs_a_bound():
    with pytest.raises(ValueError, match="at least one bound"):
        keyword_range("EXPTIME")


async def test_a_catalog_held_by_another_writer_is_busy_not_broken(tmp_path):
    """Another process holding the write lock past the wait: a StoreError that says "busy" (503 to a
    request), not a raw sqlite3 error; the change can be made once the lock is free."""
    store = SQLiteStore(tmp_path / "catalog.sqlite", busy_timeout=0.05)  # a short wait, not 30 s
    await store.open()
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="the catalog is busy") as caught:
            await store.save_site_settings({"site_name": "Busy"})
        assert caught.value.status == 503
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.save_site_settings({"site_name": "Free"})
    assert (await store.site_settings())["site_name"] == "Free"
    await store.close()
