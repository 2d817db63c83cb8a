"""Form values -> the neutral query: one condition per element, OR over its keywords, elements AND-ed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.search.compile import compile_search
from app.search.elements import element_from
from app.store.query import And, Compare, Cone, DateRange, Or, Order, TextMatch, mjd_of

ELEMENTS = [
    element_from(
        {"id": "when", "type": "date", "label": "When", "keywords": ["DATE-OBS", "DATE", "MJD-OBS"]}
    ),
    element_from({"id": "exp", "type": "number", "label": "Exposure", "keywords": ["EXPTIME", "EXPOSURE"]}),
    element_from(
        {
            "id": "obj",
            "type": "text",
            "label": "Object",
            "keywords": ["OBJECT", "TARGNAME"],
            "options": {"match": "prefix"},
        }
    ),
    element_from(
        {
            "id": "filt",
            "type": "select",
            "label": "Filter",
            "keywords": ["FILTER"],
            "options": {"from_values": True},
        }
    ),
    element_from({"id": "sky", "type": "cone", "label": "Sky", "options": {"radius": "10arcmin"}}),
    element_from({"id": "off", "type": "text", "label": "Off", "keywords": ["NOTE"], "enabled": False}),
]


def test_each_element_becomes_an_or_over_its_keywords_and_elements_are_anded():
    search = compile_search(
        ELEMENTS,
        {
            "when_from": "2026-01-01",
            "when_to": "2026-01-31",
            "exp_min": "5",
            "obj": "M31",
            "filt": "2",
            "sky_ra": "10:00:00",
            "sky_dec": "-30",
        },
    )
    assert search.errors == {}
    assert [element.id for element in search.used] == ["when", "exp", "obj", "filt", "sky"]
    assert isinstance(search.query, And)
    when, exposure, target, band, sky = search.query.parts
    assert when == DateRange(
        ("DATE-OBS", "DATE", "MJD-OBS"),
        mjd_of(datetime(2026, 1, 1, tzinfo=UTC)),
        mjd_of(datetime(2026, 2, 1, tzinfo=UTC)) - 1 / 86_400_000_000,
    )
    assert exposure == Or((Compare("EXPTIME", "ge", 5.0), Compare("EXPOSURE", "ge", 5.0)))
    assert target == Or((TextMatch("OBJECT", "M31", "prefix"), TextMatch("TARGNAME", "M31", "prefix")))
    # a drop-down value matches as text and, when it is one, as a number
    assert band == Or((Compare("FILTER", "eq", "2"), Compare("FILTER", "eq", 2)))
    assert sky == Cone(150.0, -30.0, 10 / 60, "overlaps")


def test_empty_values_add_no_condition():
    search = compile_search(
        ELEMENTS, {"when_from": "", "exp_max": " ", "sky_radius": "5arcmin", "sky_mode": "contains"}
    )
    assert search.query is None and search.errors == {} and not search.filtering


def test_a_switched_off_element_and_unknown_parameters_are_reported():
    search = compile_search(ELEMENTS, {"off": "x", "bogus": "1", "exp_min": "1"})
    assert search.errors == {
        "off": "the search element 'off' is switched off",
        "bogus": "there is no search element 'bogus'",
    }
    assert search.query == Or((Compare("EXPTIME", "ge", 1.0), Compare("EXPOSURE", "ge", 1.0)))


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        ({"exp_min": "3", "exp_max": "1"}, "exp_min", "Exposure: min (3) is greater than max (1)"),
        ({"exp_max": "1e999"}, "exp_max", "Exposure: max '1e999' is not a number"),
        ({"when_to": "yesterday"}, "when_to", "When: to:"),
        ({"sky_ra": "10", "sky_dec": "-91"}, "sky_dec", "Sky: Dec '-91' is outside"),
        ({"sky_ra": "10", "sky_dec": "0", "sky_radius": "0"}, "sky_radius", "must be greater than zero"),
        ({"sky_ra": "10", "sky_dec": "0", "sky_frame": "fk4"}, "sky_frame", "frame must be one of icrs"),
        ({"sky_dec": "0"}, "sky_ra", "Sky: a sky position needs both RA and Dec"),
    ],
)
def test_bad_values_are_reported_against_the_element(args, field, message):
    search = compile_search(ELEMENTS, args)
    assert message in search.errors.get(field, ""), search.errors
    assert search.query is None


@pytest.mark.parametrize(
    ("args", "order"),
    [
        ({}, Order()),
        ({"sort": "name"}, Order(field="name", descending=False)),
        ({"sort": "size", "order": "asc"}, Order(field="size", descending=False)),
        (
            {"sort": "exp", "order": "desc"},
            Order(keywords=("EXPTIME", "EXPOSURE"), numbers=True, descending=True),
        ),
        ({"sort": "when"}, Order(keywords=("DATE-OBS", "DATE", "MJD-OBS"), dates=True, descending=False)),
    ],
)
def test_sorting(args, order):
    search = compile_search(ELEMENTS, args)
    assert search.errors == {} and search.order == order


def test_sorting_by_something_else_is_refused():
    for sort in ("sky", "off", "header", "created; DROP TABLE images"):
        search = compile_search(ELEMENTS, {"sort": sort})
        assert search.errors["sort"].startswith(f"cannot sort by {sort!r}")
        assert search.order == Order()
