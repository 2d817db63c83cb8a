"""Search results against brute force: a few hundred images with heterogeneous headers in a real SQLite
catalog, searched through the search elements' form parameters (`compile_search` -> the store), and the
same questions answered by a pure-Python filter written independently of the code under test (in
bruteforce_helpers.py): Python's own casefold for text, integer microseconds from `datetime` (and exact
fractions for MJD numbers) for dates, and gnomonic projection plus great-circle arcs in numpy for cones.
Also: ordering, the SQLite indexes that follow the number elements, and hostile search input."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from app.search.compile import Search, compile_search
from app.search.elements import element_from
from app.store import sqlsearch
from app.store.records import ImageRecord, SearchElement, index_name, new_id
from app.store.sqlite import SQLiteStore
from tests.search.bruteforce_helpers import (
    DATE_KEYWORDS,
    ELEMENTS,
    EXPOSURE_KEYWORDS,
    INJECTIONS,
    TEXT_KEYWORDS,
    Truth,
    brute,
    catalog,
    found,
    is_number,
    some_args,
)

Searched = tuple[SQLiteStore, list[ImageRecord], dict[str, Truth], list[SearchElement]]


@pytest.fixture
async def searched(store: SQLiteStore) -> AsyncIterator[Searched]:
    """The catalog with every kind of search element defined."""
    records, truths = catalog(2026, 360)
    await store.add_images(records[:200])
    await store.add_images(records[200:])
    for data in ELEMENTS:
        await store.add_element(element_from(data))
    yield store, records, truths, await store.list_elements()


# --- the comparisons --------------------------------------------------------------------------------

async def test_every_element_type_equals_brute_force(searched: Searched) -> None:
    store, records, truths, elements = searched
    rng = random.Random(7)
    compared = {element.id: 0 for element in elements}
    for element in elements:
        for _ in range(70):
            args = some_args(rng, element, records)
            expected = brute(records, truths, elements, args)
            ids = set(await found(store, compile_search(elements, args)))
            assert ids - expected.unsure == expected.ids, (element.id, args)
            assert len(expected.unsure) <= 1
            compared[element.id] += 0 < len(expected.ids) < len(records)
    # each element's comparisons are not just of empty (or full) answers
    assert all(count >= 10 for count in compared.values()), compared


async def test_and_ed_elements_equal_brute_force(searched: Searched) -> None:
    store, records, truths, elements = searched
    rng = random.Random(11)
    nonempty = 0
    for _ in range(250):
        args: dict[str, str] = {}
        for element in rng.sample(elements, rng.randint(2, 4)):
            args.update(some_args(rng, element, records))
        expected = brute(records, truths, elements, args)
        ids = set(await found(store, compile_search(elements, args)))
        assert ids - expected.unsure == expected.ids, args
        nonempty += bool(expected.ids)
    assert nonempty >= 40


def sort_value(item: ImageRecord, keywords: list[str], numbers: bool) -> tuple[int, Any] | None:
    """The first of `keywords` that holds a number or text (`numbers`: a number): numbers sort before
    text, text by code point (booleans are not values to sort by)."""
    for keyword in keywords:
        value = item.header.get(keyword)
        if is_number(value):
            return (0, value)
        if isinstance(value, str) and not numbers:
            return (1, value)
    return None


def expected_order(records: list[ImageRecord], key: Callable[[ImageRecord], Any], descending: bool,
                   ids: set[str]) -> list[str]:
    """Sorted by `key` (None last either way), ties by id."""
    chosen = [item for item in records if item.id in ids]
    present = sorted((item for item in chosen if key(item) is not None), key=lambda i: i.id)
    present.sort(key=key, reverse=descending)  # stable: ties stay by id
    return [item.id for item in present] + sorted(item.id for item in chosen if key(item) is None)


@pytest.mark.parametrize("direction", ["asc", "desc"])
async def test_ordering_equals_brute_force(searched: Searched, direction: str) -> None:
    store, records, truths, elements = searched
    by_id = {element.id: element for element in elements}
    descending = direction == "desc"
    everything = {item.id for item in records}
    for sort in ("object", "exposure", "filter"):
        keywords, numbers = by_id[sort].keywords, by_id[sort].type == "number"
        ids = await found(store, compile_search(elements, {"sort": sort, "order": direction}))
        expected = expected_order(records, lambda i, k=keywords, n=numbers: sort_value(i, k, n),
                                  descending, everything)
        assert ids == expected, sort

    def first_date(item: ImageRecord) -> Fraction | None:
        dates = [truths[item.id].dates[k] for k in DATE_KEYWORDS if k in truths[item.id].dates]
        return min(dates) if dates else None

    ids = await found(store, compile_search(elements, {"sort": "obsdate", "order": direction}))
    assert ids == expected_order(records, first_date, descending, everything)
    # sorted and filtered together
    args = {"sort": "obsdate", "order": direction, "exposure_min": "30", "obsdate_from": "2024-01-01"}
    expected = brute(records, truths, elements, args).ids
    assert 10 < len(expected) < len(records)
    ids = await found(store, compile_search(elements, args))
    assert ids == expected_order(records, first_date, descending, expected)


async def test_ascii_search_text_finds_letters_that_fold_to_ascii(store: SQLiteStore) -> None:
    """Case folding is Python's casefold on both sides, whatever the search text is made of."""
    names = ["Straße 5", "ﬁeld 3", "Kelvin \u212a", "İstanbul", "plain"]
    records = [ImageRecord(id=new_id(), sha256=new_id(), hdu=0, path="/x.fits", name="x.fits", size=1,
                           owner="", provenance="batch", format="fits", width=1, height=1, bitpix=8,
                           header={"OBJECT": name}) for name in names]
    await store.add_images(records)
    elements = [element_from(ELEMENTS[0]), element_from(ELEMENTS[1])]
    for args, expected in [({"object": "SS"}, "Straße 5"), ({"object": "strasse"}, "Straße 5"),
                           ({"objprefix": "FI"}, "ﬁeld 3"), ({"object": "kelvin k"}, "Kelvin \u212a"),
                           ({"objprefix": "i"}, "İstanbul"), ({"object": "STRAẞE"}, "Straße 5")]:
        assert [records[names.index(expected)].id] == await found(store, compile_search(elements, args)), args


# --- indexes follow the elements --------------------------------------------------------------------

def plan_of(path: Path, search: Search) -> str:
    where, params = sqlsearch.compile_query(search.query)
    with sqlite3.connect(path) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN SELECT count(*) FROM images WHERE {where}", params)
        return " | ".join(row[3] for row in rows)


def index_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                             "AND name LIKE 'hkw%'")}


async def test_number_ranges_use_the_element_indexes_until_it_is_deleted(store: SQLiteStore,
                                                                         tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    records, truths = catalog(5, 400)
    await store.add_images(records)
    exposure = element_from(ELEMENTS[2])
    names = {f"hkw_{keyword.encode().hex()}" for keyword in EXPOSURE_KEYWORDS}
    assert names == {index_name(keyword) for keyword in EXPOSURE_KEYWORDS}
    assert index_names(path) == set()
    args = {"exposure_min": "30", "exposure_max": "300"}
    expected = brute(records, truths, [exposure], args).ids
    assert 20 < len(expected) < 300
    assert "SCAN images" in plan_of(path, compile_search([exposure], args))

    await store.add_element(exposure)
    assert index_names(path) == names
    assert await store.indexed_keywords() == sorted(EXPOSURE_KEYWORDS)
    for bounds in (args, {"exposure_min": "30"}, {"exposure_max": "300"}):
        plan = plan_of(path, compile_search([exposure], bounds))
        assert "SCAN images" not in plan, plan
        for name in names:
            assert f"INDEX {name}" in plan, plan
        assert set(await found(store, compile_search([exposure], bounds))) == brute(
            records, truths, [exposure], bounds).ids
    # a second element over one of the keywords keeps its index when the first goes
    other = element_from({"id": "exp2", "type": "number", "label": "Exposure 2", "keywords": ["EXPTIME"]})
    await store.add_element(other)
    assert await store.delete_element("exposure")
    assert index_names(path) == {index_name("EXPTIME")}
    assert await store.delete_element("exp2")
    assert index_names(path) == set()
    assert "SCAN images" in plan_of(path, compile_search([exposure], args))
    assert set(await found(store, compile_search([exposure], args))) == expected


# --- hostile input ----------------------------------------------------------------------------------

async def test_injection_strings_match_literally_or_get_a_precise_message(searched: Searched, tmp_path: Path,
                                                                          ) -> None:
    store, records, truths, elements = searched
    by_id = {element.id: element for element in elements}
    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as db:
        tables = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    literal_hits = 0
    for text in INJECTIONS:
        # text and drop-down values filled from the catalog: matched literally
        for name in ("object", "objprefix", "filter"):
            expected = brute(records, truths, elements, {name: text}).ids
            assert set(await found(store, compile_search(elements, {name: text}))) == expected, (name, text)
            literal_hits += bool(expected)
        # everything else: the field's own message, naming the field
        messages = {
            "band": f"Band: {text.strip()!r} is not one of the choices",
            "exposure_min": f"Exposure: min {text.strip()!r} is not a number",
            "exposure_max": f"Exposure: max {text.strip()!r} is not a number",
            "obsdate_from": f"Observation date: from: {text.strip()!r} is not a date",
            "obsdate_to": f"Observation date: to: {text.strip()!r} is not a date",
            "sky_ra": f"Sky position: RA {text.strip()!r} is not a coordinate",
            "sky_dec": f"Sky position: Dec {text.strip()!r} is not a coordinate",
        }
        for name, message in messages.items():
            args = {name: text}
            if name.startswith("sky_"):
                args = {"sky_ra": "10", "sky_dec": "20", name: text}
            search = compile_search(elements, args)
            assert search.errors.get(name, "").startswith(message), (name, text, search.errors)
            assert search.query is None
        if text.strip():
            for name, message in (("sky_radius", f"Sky position: radius {text!r} is not an angle"),
                                  ("sky_frame", "Sky position: frame must be one of icrs, galactic"),
                                  ("sky_mode", "Sky position: mode must be one of overlaps, contains")):
                search = compile_search(elements, {"sky_ra": "10", "sky_dec": "20", name: text})
                assert search.errors.get(name, "").startswith(message), (name, text, search.errors)
        search = compile_search(elements, {"sort": text, "order": text, text: "1"})
        assert search.errors["sort"].startswith(f"cannot sort by {text.strip()!r}")
        assert search.errors["order"] == "order must be asc or desc"
        assert search.errors[text] == f"there is no search element {text!r}"
    assert literal_hits >= 6  # the catalog holds several of these strings, and they were found
    assert by_id["object"].keywords == list(TEXT_KEYWORDS)
    # over-long text is refused, not truncated
    search = compile_search(elements, {"object": "x" * 201})
    assert search.errors == {"object": "Object: search text is limited to 200 characters"}
    # the catalog is intact
    assert await store.count_images() == len(records)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == tables
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_indexes_on_an_older_expression_are_built_again_at_open(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    first = SQLiteStore(path)
    await first.open()
    await first.add_images(catalog(5, 400)[0][:50])
    await first.add_element(element_from(ELEMENTS[2]))
    await first.close()
    name = index_name("EXPTIME")
    with sqlite3.connect(path) as db:  # as the first search indexes were built: on the bare value
        db.execute(f'DROP INDEX "{name}"')
        db.execute(f"""CREATE INDEX "{name}" ON images (json_extract(header, '$."EXPTIME"'))""")
    again = SQLiteStore(path)
    await again.open()
    try:
        with sqlite3.connect(path) as db:
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
        assert sql == sqlsearch.index_sql("EXPTIME")
        assert await again.indexed_keywords() == sorted(EXPOSURE_KEYWORDS)
        assert f"INDEX {name}" in plan_of(path, compile_search([element_from(ELEMENTS[2])],
                                                               {"exposure_min": "5"}))
    finally:
        await again.close()
