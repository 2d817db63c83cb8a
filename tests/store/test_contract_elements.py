"""The contract of the `Store` interface, continued (see test_contract.py): the search builder's elements,
their order, and the header indexes that follow their keywords."""

from __future__ import annotations

import pytest

from app.exceptions import Conflict
from app.store.records import SearchElement


async def test_search_elements_and_the_indexes_that_follow_them(any_store):
    exposure = SearchElement("exp", "number", "Exposure", ["EXPTIME", "EXPOSURE"], options={"unit": "s"})
    when = SearchElement("when", "date", "Date", ["DATE-OBS"])
    target = SearchElement("obj", "text", "Object", ["OBJECT"], help="the target")
    for element in (exposure, when, target):
        await any_store.add_element(element)
    assert [e.id for e in await any_store.list_elements()] == ["exp", "when", "obj"]
    assert [e.position for e in await any_store.list_elements()] == [0, 1, 2]
    assert (await any_store.list_elements())[0] == exposure
    assert await any_store.indexed_keywords() == ["EXPOSURE", "EXPTIME", "OBJECT"]  # not the date's
    with pytest.raises(Conflict):
        await any_store.add_element(SearchElement("exp", "text", "Again", ["X"]))

    changed = SearchElement("obj", "select", "Filter", ["FILTER", "ESO.FILT"], enabled=False, position=99)
    assert await any_store.update_element(changed)
    stored = next(e for e in await any_store.list_elements() if e.id == "obj")
    assert (stored.type, stored.label, stored.keywords, stored.enabled, stored.position) == (
        "select", "Filter", ["FILTER", "ESO.FILT"], False, 2)  # the position is not changed by update
    assert await any_store.indexed_keywords() == ["ESO.FILT", "EXPOSURE", "EXPTIME", "FILTER"]
    assert not await any_store.update_element(SearchElement("missing", "text", "x", ["A"]))

    await any_store.order_elements(["obj", "nope", "exp"])
    assert [e.id for e in await any_store.list_elements()] == ["obj", "exp", "when"]
    assert await any_store.delete_element("exp")
    assert not await any_store.delete_element("exp")
    assert await any_store.indexed_keywords() == ["ESO.FILT", "FILTER"]
    await any_store.add_element(SearchElement("last", "number", "Airmass", ["AIRMASS"]))
    assert [e.id for e in await any_store.list_elements()] == ["obj", "when", "last"]


async def test_keyword_indexes_are_shared_between_elements(any_store):
    await any_store.add_element(SearchElement("a", "number", "A", ["EXPTIME"]))
    await any_store.add_element(SearchElement("b", "select", "B", ["EXPTIME"]))
    await any_store.delete_element("a")
    assert await any_store.indexed_keywords() == ["EXPTIME"]
    await any_store.delete_element("b")
    assert await any_store.indexed_keywords() == []
