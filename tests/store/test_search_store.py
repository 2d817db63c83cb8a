"""What the search builder asks of the catalog: elements kept in order, keyword counts kept with the
images, values present, and the keyword indexes the elements need."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.exceptions import Conflict
from app.search.elements import element_from
from app.store import sqlsearch
from app.store.query import And, Compare, FieldIn, Order, TextMatch
from app.store.records import ImageRecord, new_id
from app.store.sqlite import SQLiteStore
from app.store.sqlite.connection import MIGRATIONS, _statements


def record(header, *, owner="", created=1000.0):
    return ImageRecord(
        id=new_id(),
        sha256=new_id(),
        hdu=0,
        path="/data/x.fits",
        name="x.fits",
        size=10,
        owner=owner,
        provenance="batch",
        format="fits",
        width=4,
        height=4,
        bitpix=-32,
        header=header,
        created=created,
    )


async def test_keyword_counts_follow_images_in_and_out(store):
    first = record({"EXPTIME": 10, "OBJECT": "M31"})
    second = record({"EXPTIME": 5, "FILTER": "V"})
    await store.add_images([first])
    await store.add_images([second])
    assert await store.keyword_counts() == {"EXPTIME": 2, "FILTER": 1, "OBJECT": 1}
    await store.delete_images([first.id])
    assert await store.keyword_counts() == {"EXPTIME": 1, "FILTER": 1}
    await store.delete_images([second.id, "missing"])
    assert await store.keyword_counts() == {}


async def test_a_failed_insert_counts_nothing(store):
    image = record({"EXPTIME": 10})
    await store.add_images([image])
    with pytest.raises(Conflict):
        await store.add_images([record({"AIRMASS": 1.2}), image])
    assert await store.keyword_counts() == {"EXPTIME": 1}


async def test_catalogs_from_before_the_builder_get_their_counts(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied REAL NOT NULL)"
    )
    for script in sorted(MIGRATIONS.glob("[0-9]*.sql")):
        version = int(script.name.split("_", 1)[0])
        if version >= 8:
            continue
        for statement in _statements(script.read_text()):
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, script.name))
    for header in ({"EXPTIME": 1, "OBJECT": "a"}, {"EXPTIME": 2}, {}):
        db.execute(
            "INSERT INTO images (id, sha256, hdu, path, name, size, provenance, format, width, height, "
            "header, comments, created) VALUES (?, ?, 0, '/x', 'x', 1, 'batch', 'fits', 1, 1, ?, '{}', 0)",
            (new_id(), new_id(), json.dumps(header)),
        )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.keyword_counts() == {"EXPTIME": 2, "OBJECT": 1}
    finally:
        await store.close()


async def test_elements_keep_their_order_and_indexes_follow_them(store):
    await store.add_images([record({"EXPTIME": number, "OBJECT": f"M{number}"}) for number in range(500)])
    date = element_from({"id": "when", "type": "date", "label": "When", "keywords": ["DATE-OBS", "DATE"]})
    exposure = element_from(
        {"id": "exp", "type": "number", "label": "Exposure", "keywords": ["EXPTIME", "EXPOSURE"]}
    )
    target = element_from({"id": "obj", "type": "text", "label": "Object", "keywords": ["OBJECT"]})
    for element in (date, exposure, target):
        await store.add_element(element)
    with pytest.raises(Conflict, match="already a search element 'exp'"):
        await store.add_element(element_from({"id": "exp", "type": "text", "label": "x", "keywords": ["A"]}))
    assert [(element.id, element.position) for element in await store.list_elements()] == [
        ("when", 0),
        ("exp", 1),
        ("obj", 2),
    ]
    # dates are searched through the typed dates table: no header index for them
    assert await store.indexed_keywords() == ["EXPOSURE", "EXPTIME", "OBJECT"]
    await store.order_elements(["obj", "nope", "when"])
    assert [element.id for element in await store.list_elements()] == ["obj", "when", "exp"]
    exposure.keywords = ["EXPTIME", "ITIME"]
    exposure.enabled = False
    assert await store.update_element(exposure)
    assert not await store.update_element(
        element_from({"id": "gone", "type": "text", "label": "x", "keywords": ["A"]})
    )
    saved = next(element for element in await store.list_elements() if element.id == "exp")
    assert (saved.keywords, saved.enabled, saved.position) == (["EXPTIME", "ITIME"], False, 2)
    assert await store.indexed_keywords() == ["EXPTIME", "ITIME", "OBJECT"]
    assert await store.delete_element("obj") and not await store.delete_element("obj")
    assert await store.indexed_keywords() == ["EXPTIME", "ITIME"]
    # the planner uses the expression index for a number range over the element's keyword
    where, params = sqlsearch.compile_query(Compare("EXPTIME", "gt", 1))
    plan = " ".join(
        row[-1] for row in store.db.execute(f"EXPLAIN QUERY PLAN SELECT id FROM images WHERE {where}", params)
    )
    assert "USING INDEX hkw_" in plan, plan


async def test_values_present_for_suggestions(store):
    await store.add_images(
        [
            record({"OBJECT": "M31"}, owner="ann"),
            record({"OBJECT": "m31 halo"}),
            record({"OBJECT": "M31"}),
            record({"TARGNAME": "M33"}),
            record({"OBJECT": 31}),
            record({"OBJECT": "Straße"}),
            record({"OBJECT": ["a", "list"]}),
        ]
    )
    # most frequent first, then by value as text
    assert await store.distinct_values(["OBJECT", "TARGNAME"]) == [
        ("M31", 2),
        (31, 1),
        ("M33", 1),
        ("Straße", 1),
        ("m31 halo", 1),
    ]
    assert await store.distinct_values(["OBJECT", "TARGNAME"], prefix="m3") == [
        ("M31", 2),
        ("M33", 1),
        ("m31 halo", 1),
    ]
    assert await store.distinct_values(["OBJECT"], prefix="STRASSE") == [("Straße", 1)]
    only_site = FieldIn("owner", ("",))
    assert await store.distinct_values(["OBJECT"], only_site, prefix="m") == [("M31", 1), ("m31 halo", 1)]
    assert await store.distinct_values(["OBJECT"], limit=1) == [("M31", 2)]


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        ("m31", "contains", {"M31 core", "the m31 halo"}),
        ("M31", "prefix", {"M31 core"}),
        ("%", "contains", {"100% pure"}),
        ("_", "contains", {"a_b"}),
        ("a%", "prefix", set()),
        ("STRASSE", "contains", {"Große Straße"}),
        ("'; DROP TABLE images; --", "contains", set()),
    ],
)
async def test_text_matches_ignore_case_and_are_literal(store, text, mode, expected):
    names = ["M31 core", "the m31 halo", "100% pure", "a_b", "abc", "Große Straße"]
    await store.add_images([record({"OBJECT": name}) for name in names] + [record({"OBJECT": 31})])
    found = await store.find_images(TextMatch("OBJECT", text, mode), limit=100)
    assert {image.header["OBJECT"] for image in found} == expected
    assert await store.count_images() == len(names) + 1


async def test_ordering_by_keywords_puts_missing_values_last(store):
    await store.add_images(
        [
            record({"EXPTIME": 5}, created=1),
            record({"EXPOSURE": 20}, created=2),
            record({"EXPTIME": "fast"}, created=3),
            record({}, created=4),
            record({"EXPTIME": 1.5}, created=5),
        ]
    )
    for descending, expected in ((False, [1.5, 5, 20]), (True, [20, 5, 1.5])):
        order = Order(keywords=("EXPTIME", "EXPOSURE"), numbers=True, descending=descending)
        images = await store.find_images(order=order)
        values = [image.header.get("EXPTIME", image.header.get("EXPOSURE")) for image in images]
        assert values[:3] == expected and set(map(str, values[3:])) == {"fast", "None"}
    by_name = await store.find_images(And(()), order=Order(field="created", descending=False))
    assert [image.created for image in by_name] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("bound", [1, 3, 10_000])
async def test_broad_and_narrow_searches_page_alike(store, monkeypatch, bound):
    """A search matching many images reads the newest images until a page is found (BROAD_SEARCH); a
    narrow one lets the planner choose. Either way the pages equal a brute-force filter, newest first."""
    from app.store.sqlite import catalog as sqlite_module

    monkeypatch.setattr(sqlite_module, "BROAD_SEARCH", bound)
    records = [record({"EXPTIME": number % 7}, owner="ann" if number % 3 else "", created=float(number))
               for number in range(60)]
    await store.add_images(records)
    exposure = {"id": "e", "type": "number", "label": "E", "keywords": ["EXPTIME"]}
    await store.add_element(element_from(exposure))
    for query, keep in (
        (Compare("EXPTIME", "ge", 2), lambda r: r.header["EXPTIME"] >= 2),
        (Compare("EXPTIME", "eq", 6), lambda r: r.header["EXPTIME"] == 6),
        (And((FieldIn("owner", ("ann",)), Compare("EXPTIME", "le", 1))),
         lambda r: r.owner == "ann" and r.header["EXPTIME"] <= 1),
    ):
        expected = [r.id for r in sorted(records, key=lambda r: -r.created) if keep(r)]
        pages = []
        for offset in range(0, len(expected) + 10, 10):
            pages.extend(image.id for image in await store.find_images(query, offset=offset, limit=10))
        assert pages == expected
        assert await store.count_images(query, at_most=5) == min(5, len(expected))
        # the listing's own call: its count picks the plan, the pages are the same
        for at_most in (2, 10_000):
            listed = []
            for offset in range(0, len(expected) + 10, 10):
                total, page = await store.search_images(query, offset=offset, limit=10, count_at_most=at_most)
                assert total == min(at_most, len(expected))
                listed.extend(image.id for image in page)
            assert listed == expected
