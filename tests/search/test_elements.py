"""Search element definitions: the JSON form of each type, and precise refusals naming the field."""

from __future__ import annotations

import pytest

from app.search.elements import ElementError, element_from, missing_keywords, parse_keywords, slug


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"type": "date", "label": "Observation date", "keywords": ["DATE", "DATETIME", "DATE-OBS"]},
            {
                "id": "observation_date",
                "type": "date",
                "label": "Observation date",
                "keywords": ["DATE", "DATETIME", "DATE-OBS"],
                "help": "",
                "enabled": True,
                "position": 0,
                "options": {},
            },
        ),
        (
            {
                "id": "exptime",
                "type": "number",
                "label": "Exposure",
                "keywords": "EXPTIME, EXPOSURE",
                "options": {"min": "0", "max": 3600.5, "unit": "s"},
            },
            {
                "id": "exptime",
                "type": "number",
                "label": "Exposure",
                "keywords": ["EXPTIME", "EXPOSURE"],
                "help": "",
                "enabled": True,
                "position": 0,
                "options": {"min": 0, "max": 3600.5, "unit": "s"},
            },
        ),
        (
            {
                "type": "text",
                "label": "Object",
                "keywords": ["OBJECT", "TARGNAME", "OBJECT"],
                "options": {"match": "prefix"},
                "enabled": False,
                "help": "a name",
            },
            {
                "id": "object",
                "type": "text",
                "label": "Object",
                "keywords": ["OBJECT", "TARGNAME"],
                "help": "a name",
                "enabled": False,
                "position": 0,
                "options": {"match": "prefix", "autocomplete": True},
            },
        ),
        (
            {
                "type": "select",
                "label": "Filter",
                "keywords": ["FILTER"],
                "options": {"choices": ["B", " V ", "B", 2]},
            },
            {
                "id": "filter",
                "type": "select",
                "label": "Filter",
                "keywords": ["FILTER"],
                "help": "",
                "enabled": True,
                "position": 0,
                "options": {"choices": ["B", "V", "2"], "from_values": False},
            },
        ),
        (
            {"type": "select", "label": "Instrument", "keywords": ["INSTRUME"]},
            {
                "id": "instrument",
                "type": "select",
                "label": "Instrument",
                "keywords": ["INSTRUME"],
                "help": "",
                "enabled": True,
                "position": 0,
                "options": {"choices": [], "from_values": True},
            },
        ),
        (
            {
                "type": "cone",
                "label": "Sky position",
                "keywords": ["IGNORED"],
                "options": {"radius": "30 arcsec"},
            },
            {
                "id": "sky_position",
                "type": "cone",
                "label": "Sky position",
                "keywords": [],
                "help": "",
                "enabled": True,
                "position": 0,
                "options": {"radius": "30 arcsec", "mode": "overlaps"},
            },
        ),
    ],
)
def test_the_json_form_of_each_type(data, expected):
    assert element_from(data).public() == expected


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"type": "histogram", "label": "x", "keywords": ["A"]}, "type", "type must be one of"),
        ({"type": "text", "label": " ", "keywords": ["A"]}, "label", "label is required"),
        ({"type": "text", "label": "x" * 81, "keywords": ["A"]}, "label", "limited to 80 characters"),
        ({"type": "text", "label": "x", "keywords": []}, "keywords", "name the header keyword"),
        ({"type": "text", "label": "x", "keywords": ["A'B"]}, "keywords", "is not a header keyword"),
        ({"type": "text", "label": "x", "keywords": 5}, "keywords", "must be a list"),
        ({"type": "text", "label": "x", "keywords": [f"K{n}" for n in range(21)]}, "keywords", "at most 20"),
        (
            {"type": "text", "label": "x", "keywords": ["A"], "options": {"match": "regex"}},
            "match",
            "match must be",
        ),
        (
            {"type": "text", "label": "x", "keywords": ["A"], "options": {"sql": "1"}},
            "options",
            "no option 'sql'",
        ),
        ({"type": "text", "label": "x", "keywords": ["A"], "options": []}, "options", "must be an object"),
        ({"type": "number", "label": "x", "keywords": ["A"], "options": {"min": "nan"}}, "min", "finite"),
        (
            {"type": "number", "label": "x", "keywords": ["A"], "options": {"max": True}},
            "max",
            "must be a number",
        ),
        (
            {"type": "number", "label": "x", "keywords": ["A"], "options": {"min": 3, "max": 2}},
            "max",
            "greater",
        ),
        (
            {"type": "select", "label": "x", "keywords": ["A"], "options": {"from_values": False}},
            "choices",
            "enter the choices",
        ),
        (
            {"type": "select", "label": "x", "keywords": ["A"], "options": {"choices": [None]}},
            "choices",
            "must be a list of values",
        ),
        ({"type": "cone", "label": "x", "options": {"radius": "big"}}, "radius", "is not an angle"),
        ({"type": "cone", "label": "x", "options": {"mode": "inside"}}, "mode", "mode must be one of"),
        ({"type": "text", "label": "x", "keywords": ["A"], "id": "9lives"}, "id", "must start with a letter"),
        ({"type": "text", "label": "x", "keywords": ["A"], "id": "sort"}, "id", "reserved"),
        ({"type": "text", "label": "x", "keywords": ["A"], "enabled": "maybe"}, "enabled", "true or false"),
    ],
)
def test_bad_definitions_name_the_field(data, field, message):
    with pytest.raises(ElementError) as refused:
        element_from(data)
    assert refused.value.field == field
    assert message in str(refused.value)


def test_keywords_take_the_catalogs_spelling():
    present = {"EXPTIME": 3, "HIERARCH ESO DET DIT": 1, "MixedCase": 1}
    assert parse_keywords("exptime, MixedCase, mixedcase, Airmass", present=present) == [
        "EXPTIME",
        "MixedCase",
        "mixedcase",
        "Airmass",
    ]
    element = element_from({"type": "number", "label": "t", "keywords": "exptime airmass"}, present=present)
    assert element.keywords == ["EXPTIME", "airmass"]
    assert missing_keywords(element, present) == ["airmass"]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Exposure time (s)", "exposure_time_s"),
        ("2MASS J", "f_2mass_j"),
        ("", "f"),
        ("Ωmega", "mega"),
    ],
)
def test_ids_made_from_labels(label, expected):
    assert slug(label) == expected
