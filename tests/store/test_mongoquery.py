"""The neutral query form as MongoDB filter documents and sort stages (app/store/mongoquery.py): exact
documents, no server needed."""

from __future__ import annotations

from datetime import datetime

import astropy.units as u
import pytest
from astropy_healpix import HEALPix

from app.store import mongoquery as mq
from app.store.footprint import HEALPIX_ORDER
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
from app.store.records import INDEX_PREFIX, SearchElement, index_name, keyword_of_index

NUMBER = {"$type": "number"}
TEXT = {"$type": "string", "$not": {"$type": "array"}}  # a text value, not a list (COMMENT, HISTORY)


def test_no_query_matches_everything():
    assert mq.compile_query(None) == {}


@pytest.mark.parametrize(("op", "operator"), [("eq", "$eq"), ("ne", "$ne"), ("lt", "$lt"), ("le", "$lte"),
                                               ("gt", "$gt"), ("ge", "$gte")])
def test_number_comparisons_only_meet_numbers(op, operator):
    assert mq.compile_query(Compare("EXPTIME", op, 30)) == {"header.EXPTIME": {**NUMBER, operator: 30}}
    assert mq.compile_query(Compare("EXPTIME", op, 2.5)) == {"header.EXPTIME": {**NUMBER, operator: 2.5}}


def test_text_and_boolean_comparisons_only_meet_their_own_type():
    assert mq.compile_query(Compare("FILTER", "eq", "V")) == {"header.FILTER": {**TEXT, "$eq": "V"}}
    assert mq.compile_query(Compare("SIMPLE", "eq", True)) == {"header.SIMPLE": {"$type": "bool",
                                                                                  "$eq": True}}


def test_keywords_with_dots_dollars_and_percent_are_one_encoded_field():
    assert mq.compile_query(Compare("ESO.DET CHIP", "eq", 1)) == {"header.ESO%2EDET CHIP": {**NUMBER,
                                                                                            "$eq": 1}}
    for keyword in ("a.b", "$where", "100%", "%", "", "x%2Ey", "nul\x00", "ordinary", "DATE-OBS"):
        assert mq.keyword_of_field(mq.field_name(keyword)) == keyword
        assert "." not in mq.field_name(keyword) and not mq.field_name(keyword).startswith("$")
        assert mq.field_name(keyword)
    assert mq.field_name("$x.y%") == "%24x%2Ey%25"


def test_header_keywords_are_checked():
    with pytest.raises(ValueError, match="not a header keyword"):
        mq.header_path('A"; drop')


def test_alternate_keywords_become_or():
    assert mq.compile_query(any_compare(["EXPTIME", "EXPOSURE"], "ge", 10)) == {"$or": [
        {"header.EXPTIME": {**NUMBER, "$gte": 10}}, {"header.EXPOSURE": {**NUMBER, "$gte": 10}}]}
    assert mq.compile_query(any_in_range(["AIRMASS", "SECZ"], 1.0, 1.5)) == {"$or": [
        {"$and": [{"header.AIRMASS": {**NUMBER, "$gte": 1.0}}, {"header.AIRMASS": {**NUMBER, "$lte": 1.5}}]},
        {"$and": [{"header.SECZ": {**NUMBER, "$gte": 1.0}}, {"header.SECZ": {**NUMBER, "$lte": 1.5}}]}]}


def test_text_match_is_literal_and_case_folded_on_both_sides():
    assert mq.compile_query(TextMatch("OBJECT", "M31")) == {"folded.OBJECT": {"$regex": "m31"}}
    assert mq.compile_query(TextMatch("OBJECT", "NGC 1.2*(x)", mode="prefix")) == {
        "folded.OBJECT": {"$regex": r"^ngc\ 1\.2\*\(x\)"}}
    assert mq.compile_query(TextMatch("OBJECT", "50%_[A]$")) == {"folded.OBJECT": {"$regex": r"50%_\[a\]\$"}}
    assert mq.compile_query(TextMatch("ESO.OBJ", "STRASSE")) == {"folded.ESO%2EOBJ": {"$regex": "strasse"}}
    assert mq.compile_query(TextMatch("OBJECT", "a\x00b")) == {"folded.OBJECT": {"$regex": "a\\x00b"}}
    # what the documents hold: every text value folded, nothing else
    header = {"OBJECT": "Große Straße", "ESO.X": "ÀB", "N": 3, "COMMENT": ["A"], "T": True}
    assert mq.folded_texts(header) == {"OBJECT": "grosse strasse", "ESO%2EX": "àb"}


def test_date_ranges_are_one_elem_match_over_the_typed_dates():
    query = DateRange(("DATE-OBS", "MJD-OBS"), datetime(2020, 1, 1), 59000.5)
    assert mq.compile_query(query) == {"dates": {"$elemMatch": {
        "k": {"$in": ["DATE-OBS", "MJD-OBS"]}, "mjd": {"$gte": 58849.0, "$lte": 59000.5}}}}
    assert mq.compile_query(DateRange(("DATE",), end=60000.0)) == {"dates": {"$elemMatch": {
        "k": {"$in": ["DATE"]}, "mjd": {"$lte": 60000.0}}}}
    assert mq.compile_query(DateRange(("DATE",))) == {"dates": {"$elemMatch": {"k": {"$in": ["DATE"]}}}}


def test_record_fields_and_empty_lists():
    assert mq.compile_query(FieldIn("owner", ("u1", "u2"))) == {"owner": {"$in": ["u1", "u2"]}}
    assert mq.compile_query(FieldIn("visibility", ("private",), negate=True)) == {
        "visibility": {"$nin": ["private"]}}
    assert mq.compile_query(FieldIn("id", ("a",))) == {"_id": {"$in": ["a"]}}
    assert mq.compile_query(FieldIn("owner", ())) == {"_id": {"$in": []}}
    assert mq.compile_query(FieldIn("owner", (), negate=True)) == {}
    assert mq.compile_query(And(())) == {}
    assert mq.compile_query(Or(())) == {"_id": {"$in": []}}


def test_nested_trees():
    query = And((FieldIn("owner", ("me",)), Or((Compare("A", "lt", 1), TextMatch("B", "x")))))
    assert mq.compile_query(query) == {"$and": [
        {"owner": {"$in": ["me"]}},
        {"$or": [{"header.A": {**NUMBER, "$lt": 1}}, {"folded.B": {"$regex": "x"}}]}]}


def _cell_of(ra: float, dec: float) -> int:
    grid = HEALPix(nside=2 ** HEALPIX_ORDER, order="nested")
    return int(grid.lonlat_to_healpix(ra * u.deg, dec * u.deg))


def test_a_point_cone_is_the_cell_run_of_its_point():
    cell = _cell_of(150.1, 2.2)
    assert mq.compile_query(Cone(150.1, 2.2, 0.0, mode="contains")) == {
        "cells": {"$elemMatch": {"$gte": cell, "$lte": cell}}}


def test_a_wider_cone_is_an_or_of_cell_runs_that_hold_its_centre():
    document = mq.compile_query(Cone(150.1, 2.2, 1.0))
    runs = [(part["cells"]["$elemMatch"]["$gte"], part["cells"]["$elemMatch"]["$lte"])
            for part in document["$or"]]
    assert len(runs) > 1 and set(document) == {"$or"}
    assert runs == sorted(runs) and all(low <= high for low, high in runs)
    cell = _cell_of(150.1, 2.2)
    assert any(low <= cell <= high for low, high in runs)
    # far away (the other side of the sky) is in no run
    assert not any(low <= _cell_of(330.1, -2.2) <= high for low, high in runs)


def test_cones_answered_exactly_become_the_shorter_id_list():
    cone = Cone(10.0, 20.0, 0.5)
    candidates = mq.cone_candidates(cone)
    assert mq.exact_cone(cone, ["i1", "i2"], ["r1", "r2", "r3"]) == {"_id": {"$in": ["i1", "i2"]}}
    assert mq.exact_cone(cone, ["i1", "i2", "i3"], ["r1"]) == {"$and": [candidates,
                                                                        {"_id": {"$nin": ["r1"]}}]}
    assert mq.exact_cone(cone, ["i1"], []) == candidates
    assert mq.exact_cone(cone, [], ["r1"]) == {"_id": {"$in": []}}
    query = And((FieldIn("owner", ("me",)), cone))
    assert mq.cones_of(query) == [cone]
    assert mq.cones_of(Or((cone, And((cone, Cone(1.0, 2.0, 0.1)))))) == [cone, Cone(1.0, 2.0, 0.1)]
    exact = {cone: {"_id": {"$in": ["i1", "i2"]}}}
    assert mq.compile_query(query, exact) == {"$and": [{"owner": {"$in": ["me"]}},
                                                       {"_id": {"$in": ["i1", "i2"]}}]}
    # what narrows the cone's candidates: its cone-free siblings in a top-level And, nothing under Or
    assert mq.narrowing(query, cone) == {"$and": [{"owner": {"$in": ["me"]}}]}
    assert mq.narrowing(Or((FieldIn("owner", ("me",)), cone)), cone) == {}
    assert mq.narrowing(cone, cone) == {}


def test_orders():
    assert mq.compile_order(None) == ([], {"created": -1, "_id": 1})
    assert mq.compile_order(Order("name", descending=False)) == ([], {"name": 1, "_id": 1})
    assert mq.compile_order(Order("size")) == ([], {"size": -1, "_id": 1})
    missing_last = {"$addFields": {"_nosort": {"$cond": [{"$in": [{"$type": "$_sort"}, ["missing", "null"]]},
                                                          1, 0]}}}
    assert mq.compile_order(Order(keywords=("EXPTIME",), descending=False)) == (
        [{"$addFields": {"_sort": "$header.EXPTIME"}}, missing_last], {"_nosort": 1, "_sort": 1, "_id": 1})
    assert mq.compile_order(Order(keywords=("EXPTIME", "EXPOSURE"))) == (
        [{"$addFields": {"_sort": {"$ifNull": ["$header.EXPTIME", "$header.EXPOSURE", None]}}}, missing_last],
        {"_nosort": 1, "_sort": -1, "_id": 1})
    numeric = {"$ifNull": [{"$cond": [{"$isNumber": "$header.EXPTIME"}, "$header.EXPTIME", None]},
                           {"$cond": [{"$isNumber": "$header.ITIME"}, "$header.ITIME", None]}, None]}
    assert mq.compile_order(Order(keywords=("EXPTIME", "ITIME"), numbers=True, descending=False)) == (
        [{"$addFields": {"_sort": numeric}}, missing_last], {"_nosort": 1, "_sort": 1, "_id": 1})
    stages, sort = mq.compile_order(Order(keywords=("DATE-OBS", "MJD-OBS"), dates=True))
    assert stages == [{"$addFields": {"_sort": {"$min": {"$map": {
        "input": {"$filter": {"input": {"$ifNull": ["$dates", []]}, "as": "d",
                              "cond": {"$in": ["$$d.k", ["DATE-OBS", "MJD-OBS"]]}}},
        "as": "d", "in": "$$d.mjd"}}}}}, missing_last]
    assert sort == {"_nosort": 1, "_sort": -1, "_id": 1}


def test_index_names_and_changes():
    assert index_name("EXPTIME") == "hkw_" + b"EXPTIME".hex()
    assert keyword_of_index(index_name("ESO.DET X")) == "ESO.DET X"
    assert keyword_of_index("images_created") is None
    assert keyword_of_index("hkw_zz") is None
    elements = [SearchElement("e", "number", "Exposure", ["EXPTIME", "EXPOSURE"]),
                SearchElement("d", "date", "Date", ["DATE-OBS"]),
                SearchElement("t", "text", "Object", ["OBJECT"])]
    present = ["_id_", "images_created", index_name("EXPTIME"), index_name("FILTER")]
    assert mq.index_changes(elements, present) == (["EXPOSURE", "OBJECT"], ["FILTER"])


def test_distinct_values_pipeline():
    assert mq.distinct_pipeline("FILTER", {}, "") == [
        {"$match": {"header.FILTER": {"$type": ["string", "number"], "$not": {"$type": "array"}}}},
        {"$group": {"_id": "$header.FILTER", "n": {"$sum": 1}}}]
    as_text = {"$convert": {"input": "$header.FILTER", "to": "string", "onError": "", "onNull": ""}}
    assert mq.distinct_pipeline("FILTER", {"owner": {"$in": ["me"]}}, "V.") == [
        {"$match": {"$and": [
            {"header.FILTER": {"$type": ["string", "number"], "$not": {"$type": "array"}}},
            {"owner": {"$in": ["me"]}},
            {"$or": [{"folded.FILTER": {"$regex": r"^v\."}},
                     {"$and": [{"header.FILTER": {"$type": "number"}},
                               {"$expr": {"$regexMatch": {"input": as_text, "regex": r"^v\.",
                                                          "options": "i"}}}]}]}]}},
        {"$group": {"_id": "$header.FILTER", "n": {"$sum": 1}}}]


# documents as stored (real BSON, no server) -----------------------------------------------------------

def test_image_documents_survive_bson_with_any_keyword():
    import bson

    from app.formats.fits import _sky
    from app.samples import celestial_wcs
    from app.store.base import indexed
    from app.store.mongo.documents import image_doc, image_from_doc
    from app.store.records import ImageRecord

    header = {"SIMPLE": True, "BITPIX": -32, "EXPTIME": 30.5, "OBJECT": "M31", "BLANK": None,
              "DATE-OBS": "2024-03-01T12:00:00", "COMMENT": ["a", "b"], "HIERARCH ESO.DET DIT": 2.5,
              "$where": "x", "100%": 1}
    wcs = celestial_wcs(150.0, 2.0, 100, 100)
    record = ImageRecord(id="i1", sha256="s", hdu=0, path="/p.fits", name="p.fits", size=1, owner="u",
                         provenance="batch", format="fits", width=100, height=100, bitpix=-32,
                         header=header, comments={"HIERARCH ESO.DET DIT": "seconds"},
                         sky=_sky(wcs.to_header(), 100, 100)[0], display={"levels": 3})
    document = image_doc(indexed(record))
    assert all("." not in key and not key.startswith("$") for key in document["header"])
    assert document["header"]["HIERARCH ESO%2EDET DIT"] == 2.5
    assert document["dates"] == [{"k": "DATE-OBS", "mjd": 60370.5}]
    assert document["folded"] == {"OBJECT": "m31", "DATE-OBS": "2024-03-01t12:00:00", "%24where": "x"}
    assert document["cells"] and all(isinstance(cell, int) for cell in document["cells"])
    stored = bson.decode(bson.encode(document))
    back = image_from_doc(stored)
    assert back == record and list(back.header) == list(header)


def test_usernames_fold_ascii_only_and_urls_hide_passwords():
    from app.store.mongo.connection import redacted, username_key

    assert username_key("Alice") == "alice" and username_key("ÄRGER") == "Ärger"
    assert redacted("mongodb://imagex:s3cr%40t@db:27017/imagex?authSource=admin") == (
        "mongodb://imagex:***@db:27017/imagex?authSource=admin")
    assert redacted("mongodb+srv://u:p@cluster/x") == "mongodb+srv://u:***@cluster/x"
    assert redacted("mongodb://db/imagex") == "mongodb://db/imagex"


def test_the_index_migrations_are_well_formed():
    import json

    from app.store.mongo.connection import MIGRATIONS

    scripts = sorted(MIGRATIONS.glob("[0-9]*.json"))
    assert scripts and scripts[0].name == "0001_indexes.json"
    names = set()
    for script in scripts:
        for step in json.loads(script.read_text())["steps"]:
            assert set(step) <= {"collection", "index", "name", "unique", "drop_index",
                                 "locations_from_paths"}
            if "index" in step:
                assert step["name"] not in names and not step["name"].startswith(INDEX_PREFIX)
                names.add(step["name"])
                assert all(direction in (1, -1) for _, direction in step["index"])
            if "drop_index" in step:
                names.discard(step["drop_index"])
    # what the queries rely on has an index; the same content is unique per owner
    assert {"images_dates", "images_cells", "jobs_key", "users_username", "images_file_owner",
            "image_locations_image"} <= names
    assert "images_file" not in names
