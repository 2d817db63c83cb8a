"""The contract of the `Store` interface (app/store/base.py), run on every adapter: SQLite always, MongoDB
when IMAGEX_TEST_MONGODB_URL is set (see conftest.py). Every method of the interface is exercised, here and
in test_contract_jobs.py, test_contract_accounts.py, test_contract_sky.py and test_contract_elements.py,
with the same expectations on each adapter; adapter-specific details stay in their own test files. This
file: opening, images, the neutral query form, named scalings, visibility and removal, the values present,
copying a catalog."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from app.exceptions import Conflict
from app.store import open_store
from app.store.base import Store
from app.store.query import (
    And,
    Compare,
    Cone,
    DateRange,
    FieldIn,
    Or,
    Order,
    TextMatch,
    any_compare,
    any_in_range,
)
from app.store.records import ImageLocation, NamedScaling
from tests.store.examples import image, job, names, sky_at

# opening and closing ---------------------------------------------------------------------------------

async def test_reopening_keeps_records_and_closing_twice_is_safe(adapter_url):
    first = open_store(adapter_url)
    await first.open()
    record = image("kept", EXPTIME=30.0, OBJECT="M31")
    await first.add_images([record])
    await first.close()
    await first.close()
    again = open_store(adapter_url)
    await again.open()
    await again.open()  # a second open is harmless
    try:
        assert await again.get_image(record.id) == record
        assert await again.count_images() == 1
        assert await again.keyword_counts() == {"EXPTIME": 1, "OBJECT": 1}
    finally:
        await again.close()


async def test_the_migration_version_is_the_newest_shipped(any_store, adapter_url):
    from app.store.sqlite.connection import MIGRATIONS

    folder, pattern = ((MIGRATIONS / "mongo", "[0-9]*.json") if adapter_url.startswith("mongodb")
                       else (MIGRATIONS, "[0-9]*.sql"))
    newest = max(int(script.name.split("_", 1)[0]) for script in folder.glob(pattern))
    assert await any_store.migration_version() == newest


# images ----------------------------------------------------------------------------------------------

async def test_image_round_trip_keeps_every_field(any_store):
    record = image("full", owner="u1", visibility="public", sky=sky_at(150.1, 2.2),
                   EXPTIME=30.5, NAXIS=2, OBJECT="M31 — ünïcode", SIMPLE=True, BLANK=None,
                   COMMENT=["first", "second"], **{"HIERARCH ESO.DET DIT": 2.5, "$weird%": "x"})
    record.display = {"scaling": {"interval": "zscale", "low": -1.5, "high": 20.0}, "levels": 5}
    record.note = "a note"
    record.job_id = "job1"
    await any_store.add_images([record])
    back = await any_store.get_image(record.id)
    assert back == record
    assert list(back.header) == list(record.header)  # card order kept
    assert await any_store.get_image("missing") is None


async def test_a_file_with_several_hdus_is_found_by_checksum_in_hdu_order(any_store):
    await any_store.add_images([image("h2", sha256="same", hdu=2), image("h0", sha256="same", hdu=0),
                                image("h1", sha256="same", hdu=1), image("other", sha256="other")])
    assert [r.hdu for r in await any_store.images_with_checksum("same")] == [0, 1, 2]
    assert await any_store.images_with_checksum("none") == []
    many = ["none", "other", "same", "same", *(f"absent{n}" for n in range(600))]  # past SQLite's 500
    assert await any_store.catalogued_checksums(many) == {"same", "other"}
    assert await any_store.catalogued_checksums([]) == set()


async def test_add_images_is_all_or_nothing(any_store):
    await any_store.add_images([image("a", sha256="dup", A=1)])
    with pytest.raises(Conflict):
        await any_store.add_images([image("b", sha256="new", B=1), image("c", sha256="dup", C=1)])
    assert names(await any_store.find_images()) == ["a"]
    assert await any_store.keyword_counts() == {"A": 1}
    await any_store.add_images([])
    assert await any_store.count_images() == 1


async def test_the_same_content_is_catalogued_once_per_owner(any_store):
    mine = image("mine", sha256="shared", owner="u1", size=100)
    theirs = image("theirs", sha256="shared", owner="u2", size=100)
    await any_store.add_images([mine])
    await any_store.add_images([theirs])  # another owner: a record of their own
    with pytest.raises(Conflict):
        await any_store.add_images([image("again", sha256="shared", owner="u1")])
    assert sorted(names(await any_store.images_with_checksum("shared"))) == ["mine", "theirs"]
    usage = await any_store.usage()  # each owner pays for their copy
    assert {owner: (u.images, u.bytes) for owner, u in usage.items()} == {"u1": (1, 100), "u2": (1, 100)}


async def test_every_location_of_an_images_content_is_kept(any_store):
    first = image("first", created=5.0)
    second = image("second", created=6.0)
    await any_store.add_images([first, second])
    # an image's own path is its first location
    assert await any_store.image_locations([first.id]) == [ImageLocation(first.id, first.path, 5.0)]
    copy = ImageLocation(first.id, "/data/tree/copy.fits", 9.0)
    await any_store.add_locations([copy, ImageLocation("missing", "/data/x.fits", 9.0)])
    await any_store.add_locations([ImageLocation(first.id, "/data/tree/copy.fits", 12.0)])  # kept as it was
    expected = [ImageLocation(first.id, first.path, 5.0), copy, ImageLocation(second.id, second.path, 6.0)]
    assert await any_store.image_locations([second.id, first.id, "missing"]) == sorted(
        expected, key=lambda location: location.image_id)  # by image id, then time
    await any_store.delete_images([first.id])
    assert await any_store.image_locations([first.id]) == []
    assert [location.image_id for location in await any_store.image_locations([first.id, second.id])] == [
        second.id]
    await any_store.add_images([first])  # catalogued again: only its own path, nothing left over
    assert await any_store.image_locations([first.id]) == [ImageLocation(first.id, first.path, 5.0)]


async def test_counts_may_stop_at_a_bound(any_store):
    await any_store.add_images([image(f"n{number}", created=1000.0 + number, EXPTIME=number)
                                for number in range(7)])
    assert await any_store.count_images() == 7
    assert await any_store.count_images(at_most=3) == 3
    assert await any_store.count_images(at_most=100) == 7
    assert await any_store.count_images(Compare("EXPTIME", "ge", 5), at_most=3) == 2
    # a listing's count and page together: the page as find_images gives it, newest first
    total, page = await any_store.search_images(Compare("EXPTIME", "ge", 1), offset=2, limit=3,
                                                count_at_most=4)
    assert total == 4 and names(page) == ["n4", "n3", "n2"]
    total, page = await any_store.search_images(order=Order(field="name", descending=False), limit=2)
    assert total == 7 and names(page) == ["n0", "n1"]


async def test_find_images_newest_first_with_offset_and_limit(any_store):
    await any_store.add_images([image(f"n{n}", created=1000.0 + n) for n in range(4)])
    await any_store.add_images([image(f"n{n}", created=1000.0 + n) for n in range(4, 7)])
    newest = [f"n{n}" for n in range(6, -1, -1)]
    assert names(await any_store.find_images()) == newest
    assert names(await any_store.find_images(offset=2, limit=3)) == newest[2:5]
    assert await any_store.find_images(offset=7) == []
    assert await any_store.find_images(limit=0) == []
    assert await any_store.count_images() == 7


async def test_equal_sort_values_are_ordered_by_id_so_pages_are_stable(any_store):
    records = [image(f"t{n}", created=5.0) for n in range(6)]
    await any_store.add_images(records)
    expected = sorted(records, key=lambda record: record.id)
    assert [r.id for r in await any_store.find_images()] == [r.id for r in expected]
    pages = [r.id for start in range(0, 6, 2) for r in await any_store.find_images(offset=start, limit=2)]
    assert pages == [r.id for r in expected]


async def test_orders_by_field_by_keyword_and_by_date(any_store):
    await any_store.add_images([
        image("b", created=3.0, size=10, fmt="png", EXPTIME=5, DATE_OBS="2020-01-02T00:00:00"),
        image("a", created=1.0, size=30, fmt="fits", EXPOSURE=7.5, MJD_OBS=58000.0),
        image("c", created=2.0, size=20, fmt="jpeg", EXPTIME=1, EXPOSURE=100, DATE="2019-05-05"),
        image("d", created=4.0, size=40, fmt="tiff", OBJECT="no exposure, no date"),
    ])
    assert names(await any_store.find_images(order=Order("name", descending=False))) == ["a", "b", "c", "d"]
    assert names(await any_store.find_images(order=Order("size"))) == ["d", "a", "c", "b"]
    oldest_first = Order("created", descending=False)
    assert names(await any_store.find_images(order=oldest_first)) == ["a", "c", "b", "d"]
    assert names(await any_store.find_images(order=Order("format", descending=False))) == ["a", "c", "b", "d"]
    # the first present of the keywords; images with none of them last, either way
    by_exposure = Order(keywords=("EXPTIME", "EXPOSURE"), descending=False)
    assert names(await any_store.find_images(order=by_exposure)) == ["c", "b", "a", "d"]
    by_exposure = Order(keywords=("EXPTIME", "EXPOSURE"), descending=True)
    assert names(await any_store.find_images(order=by_exposure)) == ["a", "b", "c", "d"]
    by_date = Order(keywords=("DATE-OBS", "MJD-OBS", "DATE"), dates=True, descending=False)
    assert names(await any_store.find_images(order=by_date)) == ["a", "c", "b", "d"]
    by_date = Order(keywords=("DATE-OBS", "MJD-OBS", "DATE"), dates=True)
    assert names(await any_store.find_images(order=by_date)) == ["b", "c", "a", "d"]
    assert names(await any_store.find_images(order=by_date, offset=1, limit=2)) == ["c", "a"]
    # only the keywords named count
    by_date = Order(keywords=("DATE-OBS", "MJD-OBS"), dates=True)
    assert names(await any_store.find_images(order=by_date))[:2] == ["b", "a"]


async def test_numeric_orders_leave_text_and_booleans_last(any_store):
    await any_store.add_images([
        image("five", created=1.0, EXPTIME=5), image("twenty", created=2.0, EXPOSURE=20),
        image("fast", created=3.0, EXPTIME="fast"), image("none", created=4.0),
        image("bool", created=5.0, EXPTIME=True), image("small", created=6.0, EXPTIME=1.5)])
    for descending, expected in ((False, ["small", "five", "twenty"]), (True, ["twenty", "five", "small"])):
        order = Order(keywords=("EXPTIME", "EXPOSURE"), numbers=True, descending=descending)
        found = names(await any_store.find_images(order=order))
        assert found[:3] == expected and set(found[3:]) == {"fast", "none", "bool"}


# the neutral query form ------------------------------------------------------------------------------

CATALOG = [
    dict(name="m31", OBJECT="M31", EXPTIME=9, FILTER="r", AIRMASS=1.05, SIMPLE=True),
    dict(name="m33", OBJECT="M33", EXPTIME=10, FILTER="g", AIRMASS=1.5, SIMPLE=False),
    dict(name="ngc", OBJECT="NGC 224", EXPTIME=100, FILTER="R", EXPOSURE=3.0),
    dict(name="flat", OBJECT="flat", EXPTIME=100.0, FILTER="r", EXPOSURE=300),
    dict(name="quote", OBJECT="O'Brien \"the\" 50%_off", EXPTIME=1.5),
    dict(name="like", OBJECT="O'Brien xthex 50xxoff", EXPTIME=-3, COMMENT=["M31 here"]),
    dict(name="text", OBJECT="Ünïcode Straße", EXPTIME="fast", FILTER=7),
    dict(name="hier", **{"HIERARCH ESO DET DIT": 2.5, "ESO.TEL": "UT1"}),
]


@pytest.fixture
async def catalog(any_store):
    await any_store.add_images([image(created=1000.0 + n, **values) for n, values in enumerate(CATALOG)])
    return any_store


QUERIES = [
    (Compare("EXPTIME", "eq", 100), ["flat", "ngc"]),
    (Compare("EXPTIME", "gt", 9), ["flat", "ngc", "m33"]),
    (Compare("EXPTIME", "le", 9), ["like", "quote", "m31"]),
    (Compare("EXPTIME", "ne", 100), ["like", "quote", "m33", "m31"]),  # not "fast", not missing
    (Compare("EXPTIME", "lt", 0), ["like"]),
    (Compare("EXPTIME", "eq", "fast"), ["text"]),
    (Compare("FILTER", "eq", "r"), ["flat", "m31"]),  # case matters for eq
    (Compare("FILTER", "gt", "g"), ["flat", "m31"]),  # "R" < "g" < "r"
    (Compare("FILTER", "eq", 7), ["text"]),
    (Compare("SIMPLE", "eq", True), ["m31"]),
    (Compare("SIMPLE", "eq", False), ["m33"]),
    (Compare("OBJECT", "eq", "M31 here"), []),  # a list value (COMMENT elsewhere) never matches
    (Compare("COMMENT", "eq", "M31 here"), []),
    (Compare("HIERARCH ESO DET DIT", "ge", 2), ["hier"]),
    (Compare("ESO.TEL", "eq", "UT1"), ["hier"]),
    (Compare("MISSING", "ne", 1), []),
    (any_compare(["EXPTIME", "EXPOSURE"], "ge", 200), ["flat"]),
    (any_in_range(["EXPOSURE", "EXPTIME"], 2, 5), ["ngc"]),
    (any_in_range(["EXPTIME"], 9, 10), ["m33", "m31"]),
    (And((Compare("FILTER", "eq", "r"), Compare("EXPTIME", "lt", 50))), ["m31"]),
    (Or((Compare("FILTER", "eq", "g"), Compare("OBJECT", "eq", "flat"))), ["flat", "m33"]),
    (And(()), ["hier", "text", "like", "quote", "flat", "ngc", "m33", "m31"]),
    (Or(()), []),
    (TextMatch("OBJECT", "m3"), ["m33", "m31"]),
    (TextMatch("OBJECT", "50%_"), ["quote"]),  # % and _ are literal
    (TextMatch("OBJECT", "\"THE\""), ["quote"]),
    (TextMatch("OBJECT", ".*"), []),  # no pattern either
    (TextMatch("OBJECT", "o'b", mode="prefix"), ["like", "quote"]),
    (TextMatch("OBJECT", "brien", mode="prefix"), []),
    (TextMatch("OBJECT", "ÜNÏ"), ["text"]),
    (TextMatch("OBJECT", "STRASSE"), ["text"]),  # case-folded on both sides: ß is ss
    (TextMatch("OBJECT", "ünïcode straße", mode="prefix"), ["text"]),
    (TextMatch("EXPTIME", "10"), []),  # numbers are not text
    (TextMatch("COMMENT", "M31"), []),
    (TextMatch("ESO.TEL", "ut"), ["hier"]),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[repr(q)[:60] for q, _ in QUERIES])
async def test_query(catalog, query, expected):
    assert names(await catalog.find_images(query)) == expected
    assert await catalog.count_images(query) == len(expected)


async def test_record_fields(any_store):
    await any_store.add_images([image("mine", owner="me", created=2.0),
                                image("public", owner="other", visibility="public", created=1.0),
                                image("theirs", owner="other", created=0.5)])
    mine = await any_store.find_images(FieldIn("owner", ("me",)))
    assert names(mine) == ["mine"]
    assert names(await any_store.find_images(FieldIn("id", (mine[0].id, "nope")))) == ["mine"]
    visible = Or((FieldIn("owner", ("me",)), FieldIn("visibility", ("private",), negate=True)))
    assert names(await any_store.find_images(visible)) == ["mine", "public"]
    assert await any_store.count_images(FieldIn("owner", ())) == 0
    assert await any_store.count_images(FieldIn("owner", (), negate=True)) == 3
    assert await any_store.count_images(FieldIn("format", ("fits",))) == 3


async def test_date_ranges_over_alternate_keywords(any_store):
    await any_store.add_images([
        image("iso", DATE_OBS="2024-03-01T12:00:00", created=4.0),
        image("mjd", MJD_OBS=60400.25, created=3.0),  # 2024-04-05 06:00
        image("date", DATE="2023-12-31", created=2.0),
        image("none", OBJECT="no date", created=1.0),
    ])
    anywhere = ("DATE-OBS", "MJD-OBS", "DATE")
    spring = DateRange(anywhere, datetime(2024, 3, 1, 12), datetime(2024, 4, 5, 6))  # both inclusive
    assert names(await any_store.find_images(spring)) == ["iso", "mjd"]
    assert names(await any_store.find_images(DateRange(anywhere, end=60310.0))) == ["date"]
    assert names(await any_store.find_images(DateRange(("DATE-OBS",), start=60000.0))) == ["iso"]
    assert names(await any_store.find_images(DateRange(anywhere))) == ["iso", "mjd", "date"]
    assert await any_store.count_images(DateRange(("EXPTIME",))) == 0


async def test_replacing_an_image_follows_its_header_and_refuses_a_stale_series(any_store):
    """A DICOM series' record is replaced as slices join it: its dates, keywords and footprint follow
    the new header, its locations stay, and a replacement made from a series another process has changed
    since is refused."""
    one = {"path": "/data/s1.dcm", "sha256": "s1", "size": 10, "position": 0.0, "instance": 1}
    two = {"path": "/data/s2.dcm", "sha256": "s2", "size": 12, "position": 5.0, "instance": 2}
    first = dataclasses.replace(image("series", DATE_OBS="2024-03-01", OBJECT="x", sky=sky_at(150.0, 2.0)),
                                series=[one])
    await any_store.add_images([first])
    await any_store.add_locations([ImageLocation(first.id, "/data/copy/s1.dcm", 2000.0)])
    joined = dataclasses.replace(
        first, sha256="s2", path="/data/s2.dcm", header={"FILTER": "r", "DATE": "2020-01-02"},
        sky=sky_at(30.0, -40.0), series=[two, one], size=22,
        planes={"count": 2, "axis": "position", "unit": "mm", "values": [5.0, 0.0]})
    assert await any_store.replace_image(joined, [two]) is False  # not what the catalog holds
    assert (await any_store.get_image(first.id)).series == [one]
    assert await any_store.replace_image(joined, [one]) is True
    assert await any_store.get_image(first.id) == joined
    assert await any_store.replace_image(joined, [one]) is False  # changed meanwhile
    assert await any_store.keyword_counts() == {"DATE": 1, "FILTER": 1}
    january = DateRange(("DATE",), datetime(2020, 1, 1), datetime(2020, 1, 3))
    assert names(await any_store.find_images(january)) == ["series"]
    assert await any_store.count_images(DateRange(("DATE-OBS",))) == 0
    assert names(await any_store.find_images(Cone(30.0, -40.0, 0.01))) == ["series"]
    assert await any_store.count_images(Cone(150.0, 2.0, 0.01)) == 0
    assert [place.path for place in await any_store.image_locations([first.id])] \
        == ["/data/series.fits", "/data/copy/s1.dcm"]
    assert {owner: (u.images, u.bytes) for owner, u in (await any_store.usage()).items()} == {"": (1, 22)}
    missing = dataclasses.replace(joined, id="missing")
    assert await any_store.replace_image(missing, [two, one]) is False
    assert await any_store.get_image("missing") is None


async def test_dates_read_again_at_startup_never_replace_those_of_the_current_rules(any_store):
    """At its opening a catalog reads again the dates of images catalogued under older date rules. An image
    re-read meanwhile (another process replaced it, or catalogued it anew) has its dates from its new header
    under the current rules: the reading of its older header must not replace them."""
    from app.store.dates import header_dates

    current = image("current", DATE_OBS="2024-05-01")
    await any_store.add_images([current])
    await any_store._set_dates({current.id: header_dates({"DATE-OBS": "2020-01-01"})})
    may = DateRange(("DATE-OBS",), datetime(2024, 5, 1), datetime(2024, 5, 2))
    assert names(await any_store.find_images(may)) == ["current"]
    assert await any_store.count_images(DateRange(("DATE-OBS",), end=datetime(2021, 1, 1))) == 0


async def test_query_values_are_inert(catalog):
    hostile = "'); DROP TABLE images; --"
    assert await catalog.count_images(Compare("OBJECT", "eq", hostile)) == 0
    assert await catalog.count_images(TextMatch("OBJECT", hostile)) == 0
    assert await catalog.count_images() == len(CATALOG)


# named scalings --------------------------------------------------------------------------------------

async def test_named_scalings(any_store):
    deep = NamedScaling("deep", "zscale", "asinh", -1.5, 250.0, source="/a.fits", created_by="u1")
    flat = NamedScaling("flat", "percentile", "histeq", 0.0, 1.0, curve=[0.0, 0.25, 1.0])
    await any_store.save_scaling(flat)
    await any_store.save_scaling(deep)
    with pytest.raises(Conflict, match="exists already"):
        await any_store.save_scaling(NamedScaling("deep", "minmax", "linear", 0.0, 1.0))
    assert await any_store.get_scaling("deep") == deep
    assert await any_store.get_scaling("missing") is None
    assert await any_store.list_scalings() == [deep, flat]


# permissions, removal, usage -----------------------------------------------------------------------

async def test_an_images_display_record_is_replaced_and_nothing_else(any_store):
    """A two-phase ingest catalogs an image while its pyramids are still to be built and records them later:
    only the display record changes (a visibility or header changed meanwhile stays)."""
    record = image("tiling", owner="u1", EXPTIME=30.0)
    record.display = {"stretch": "log", "levels": 9, "tiling": True}
    await any_store.add_images([record])
    await any_store.set_visibility([record.id], "public")
    assert await any_store.set_display(record.id, {"stretch": "log", "levels": 9})
    stored = await any_store.get_image(record.id)
    assert stored.display == {"stretch": "log", "levels": 9}
    assert (stored.visibility, stored.header, stored.owner) == ("public", record.header, "u1")
    assert not await any_store.set_display("missing", {"levels": 1})
    assert await any_store.get_image("missing") is None


async def test_visibility_deletion_keyword_counts_and_usage(any_store):
    a0 = image("a0", sha256="file-a", hdu=0, owner="u1", size=100, created=4.0, EXPTIME=1, OBJECT="x")
    a1 = image("a1", sha256="file-a", hdu=1, owner="u1", size=100, created=3.0, EXPTIME=2)
    b = image("b", owner="u1", size=50, created=2.0, OBJECT="y", FILTER="r")
    c = image("c", owner="u2", size=7, created=1.0, FILTER="g")
    await any_store.add_images([a0, a1])
    await any_store.add_images([b])
    await any_store.add_images([c])
    usage = await any_store.usage()
    assert {owner: (u.images, u.bytes) for owner, u in usage.items()} == {"u1": (3, 150), "u2": (1, 7)}
    assert await any_store.keyword_counts() == {"EXPTIME": 2, "FILTER": 2, "OBJECT": 2}
    await any_store.set_visibility([a0.id, c.id, "missing"], "public")
    assert names(await any_store.find_images(FieldIn("visibility", ("public",)))) == ["a0", "c"]
    await any_store.delete_images([a0.id, b.id, "missing"])
    assert await any_store.get_image(a0.id) is None
    assert sorted(names(await any_store.find_images())) == ["a1", "c"]
    assert await any_store.keyword_counts() == {"EXPTIME": 1, "FILTER": 1}
    await any_store.delete_images([a0.id])  # twice: nothing more comes off the counts
    assert await any_store.keyword_counts() == {"EXPTIME": 1, "FILTER": 1}
    usage = await any_store.usage()
    assert {owner: (u.images, u.bytes) for owner, u in usage.items()} == {"u1": (1, 100), "u2": (1, 7)}


# search elements: the values present (the elements themselves: test_contract_elements.py) -----------

async def test_distinct_values(catalog):
    assert await catalog.distinct_values(["FILTER"]) == [("r", 2), (7, 1), ("R", 1), ("g", 1)]
    assert await catalog.distinct_values(["FILTER"], prefix="R") == [("r", 2), ("R", 1)]
    assert await catalog.distinct_values(["FILTER"], Compare("EXPTIME", "eq", 100)) == [("R", 1), ("r", 1)]
    assert await catalog.distinct_values(["FILTER"], limit=1) == [("r", 2)]
    # alternate keywords count together; lists and booleans are not offered
    assert await catalog.distinct_values(["EXPOSURE", "EXPTIME"], prefix="10") == [(100, 2), (10, 1)]
    assert await catalog.distinct_values(["COMMENT", "SIMPLE"]) == []
    assert await catalog.distinct_values(["FILTER"], prefix="zz") == []
    assert await catalog.distinct_values(["OBJECT"], prefix="ÜNÏCODE STRASSE") == [("Ünïcode Straße", 1)]
    # anywhere in the value, as a text search matches; numbers by their digits; LIKE's wildcards literal
    inside = await catalog.distinct_values(["OBJECT"], prefix="STRASSE", anywhere=True)
    assert inside == [("Ünïcode Straße", 1)]
    assert await catalog.distinct_values(["OBJECT"], prefix="STRASSE") == []
    digits = await catalog.distinct_values(["EXPOSURE", "EXPTIME"], prefix="00", anywhere=True)
    assert digits == [(100, 2), (300, 1)]
    literal = await catalog.distinct_values(["OBJECT"], prefix="%_", anywhere=True)
    assert literal == [("O'Brien \"the\" 50%_off", 1)]


# copying a whole catalog -----------------------------------------------------------------------------

async def test_images_and_jobs_are_listed_in_id_order_and_jobs_copied_as_they_are(any_store, adapter_url):
    records = [image(f"scan{n}") for n in range(5)]
    await any_store.add_images(records)
    by_id = sorted(records, key=lambda record: record.id)
    first = await any_store.scan_images("", 3)
    assert first == by_id[:3]  # whole records, every field as added
    assert await any_store.scan_images(first[-1].id, 3) == by_id[3:]
    assert await any_store.scan_images(by_id[-1].id, 3) == []
    assert await any_store.existing_ids("images", [records[0].id, "nonesuch"]) == {records[0].id}

    [queued] = await any_store.enqueue([job("/data/scan.fits")])
    done = dataclasses.replace(queued, id="~copied", key="/data/copied.fits", state="done", attempts=2,
                               worker="w", image_ids=[records[0].id], note="copied", created=5.0, updated=6.0)
    clash = dataclasses.replace(done, id="~clash", key=queued.key)  # a key queued already
    assert await any_store.put_jobs([done, clash]) == 1
    assert await any_store.put_jobs([done]) == 0  # present: skipped
    assert await any_store.scan_jobs("", 10) == sorted([queued, done], key=lambda item: item.id)
    assert await any_store.scan_jobs(queued.id, 10) == [done]
    assert await any_store.existing_ids("jobs", [done.id, clash.id]) == {done.id}


async def test_a_catalog_knows_where_it_is(any_store, adapter_url):
    assert any_store.exists()
    assert "password" not in any_store.location()
    twin = open_store(adapter_url)
    assert any_store.same_place(twin)


async def test_every_method_of_the_interface_is_exercised():
    """The suite names every abstract method of Store: a new method needs a contract test."""
    files = sorted(Path(__file__).parent.glob("test_contract*.py"))
    assert len(files) == 5
    source = "".join(path.read_text(encoding="utf-8") for path in files)
    # the adapters' primitives (leading underscore) are exercised through the public methods built on them;
    # a primitive behind the public method of its name (`_add_images`) needs that method exercised
    names = {name for name in dir(Store) if not name.startswith("_")}
    public = sorted({name.lstrip("_") for name in Store.__abstractmethods__} & names)
    assert {"add_images", "replace_image", "set_sky", "find_images"} <= set(public)
    missing = [name for name in public if f".{name}(" not in source]
    assert missing == []


