"""The neutral query form in MongoDB: filter documents over the `images` collection, sort pipelines, and the
names of the indexes that follow the search builder's elements. Pure translation (no driver needed); the
mirror of app/store/sqlsearch.py.

An image document keeps its header as a sub-document, `header`, whose field names are the keywords encoded
by `field_name` (MongoDB reads `.` as a path separator and `$` as an operator, so those are escaped), and
beside it `folded`: every text value case-folded (`str.casefold`, as SQLite's search does), which text
matches read, so that "STRASSE" finds "Straße" (a regular expression's case-insensitivity cannot).
Typed dates sit beside it as `dates: [{"k": keyword, "mjd": number}, ...]` and the footprint's HEALPix cells
as `cells: [int, ...]`, both multikey-indexed.

A cone is answered in two steps: the cells give candidates (`cone_candidates`), the exact footprint test runs
in Python on those (app/search/footprint.py), and the query is then translated with the ids that passed
(`compile_query(query, cones)` with `exact_cone`), so counts, pages and orderings are all done by the
server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from app.store.footprint import cone_ranges
from app.store.query import And, Compare, Cone, DateRange, FieldIn, Or, Order, Query, TextMatch, check_keyword
from app.store.records import SearchElement, indexed_keywords, keyword_of_index

Filter = dict[str, Any]
_OPS = {"eq": "$eq", "ne": "$ne", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}
# matches no document, answered from the _id index without reading any
NOTHING: Filter = {"_id": {"$in": []}}
# header values that are lists (COMMENT, HISTORY) never match a condition, as in SQLite: MongoDB would
# otherwise test their elements
_NOT_ARRAY = {"$not": {"$type": "array"}}
# the fields of an image record, as stored (`id` is the document's `_id`)
STORED_FIELD = {"id": "_id", "owner": "owner", "visibility": "visibility", "provenance": "provenance",
                "format": "format", "sha256": "sha256", "created": "created", "name": "name", "size": "size"}
_ESCAPES = {"%": "%25", ".": "%2E", "$": "%24", "\x00": "%00"}
_ESCAPED = re.compile("|".join(re.escape(code) for code in _ESCAPES.values()))
_UNESCAPES = {code: char for char, code in _ESCAPES.items()}


def field_name(keyword: str) -> str:
    """A header keyword as a field name of the `header` sub-document: `%`, `.`, `$` and NUL are written as
    `%25`, `%2E`, `%24`, `%00`, so any keyword is one plain field (an empty one is `%`, which no escape
    makes)."""
    return "".join(_ESCAPES.get(char, char) for char in keyword) if keyword else "%"


def keyword_of_field(name: str) -> str:
    """The inverse of `field_name`."""
    if name == "%":
        return ""
    return _ESCAPED.sub(lambda match: _UNESCAPES[match.group(0)], name)


def header_path(keyword: str) -> str:
    """The dotted path of one (checked) query keyword's value."""
    return "header." + field_name(check_keyword(keyword))


def folded_path(keyword: str) -> str:
    """The dotted path of one (checked) query keyword's case-folded text."""
    return "folded." + field_name(check_keyword(keyword))


def folded_texts(header: Mapping[str, Any]) -> dict[str, str]:
    """The `folded` sub-document of an image: its text values case-folded, under encoded keywords."""
    return {field_name(key): value.casefold() for key, value in header.items() if isinstance(value, str)}


def literal(text: str) -> str:
    """A regular expression that matches `text` literally (NUL written as an escape, which the server
    requires)."""
    return re.escape(text).replace("\x00", "\\x00")


def compile_query(query: Query | None, cones: Mapping[Cone, Filter] | None = None) -> Filter:
    """A filter document for `query`. A `Cone` becomes its exact filter when `cones` has one (see
    `exact_cone`), else its candidates by cell."""
    if query is None:
        return {}
    if isinstance(query, Compare):
        return {header_path(query.keyword): _compare(query)}
    if isinstance(query, TextMatch):
        return {folded_path(query.keyword): {"$regex": ("^" if query.mode == "prefix" else "")
                                             + literal(query.text.casefold())}}
    if isinstance(query, DateRange):
        return {"dates": {"$elemMatch": date_condition(query)}}
    if isinstance(query, Cone):
        if cones is not None and query in cones:
            return cones[query]
        return cone_candidates(query)
    if isinstance(query, FieldIn):
        field = STORED_FIELD[query.field]
        if not query.values:
            return {} if query.negate else dict(NOTHING)
        return {field: {"$nin" if query.negate else "$in": list(query.values)}}
    if isinstance(query, And | Or):
        if not query.parts:
            return {} if isinstance(query, And) else dict(NOTHING)
        parts = [compile_query(part, cones) for part in query.parts]
        return {"$and" if isinstance(query, And) else "$or": parts}
    raise TypeError(f"not a query node: {query!r}")


def _compare(query: Compare) -> Filter:
    """Only values of the query value's type compare: numbers with numbers (never text or T/F), text with
    text, booleans with booleans; `ne` never matches an image without the keyword."""
    value = query.value
    if isinstance(value, bool):
        kind: dict[str, Any] = {"$type": "bool"}
    elif isinstance(value, int | float):
        kind = {"$type": "number"}
    else:
        kind = {"$type": "string", **_NOT_ARRAY}
    return {**kind, _OPS[query.op]: value}


def date_condition(query: DateRange) -> Filter:
    """The `$elemMatch` condition on one entry of `dates`."""
    low, high = query.bounds()
    condition: Filter = {"k": {"$in": list(query.keywords)}}
    bounds: Filter = {}
    if low is not None:
        bounds["$gte"] = low
    if high is not None:
        bounds["$lte"] = high
    if bounds:
        condition["mjd"] = bounds
    return condition


def cone_candidates(query: Cone) -> Filter:
    """Images with a footprint cell among the cone's (runs of the multikey cell index): a superset of the
    matches."""
    runs = [{"cells": {"$elemMatch": {"$gte": low, "$lte": high}}}
            for low, high in cone_ranges(query.ra, query.dec, query.radius_deg, query.mode)]
    return runs[0] if len(runs) == 1 else {"$or": runs}


def exact_cone(cone: Cone, accepted: Sequence[str], rejected: Sequence[str]) -> Filter:
    """The filter of a cone once its candidates went through the footprint test: the ids that passed, or
    for a wide cone (most candidates pass, only those near its rim fail) the candidates less those that
    failed, whichever list is shorter, so the filter stays small."""
    if not rejected:
        return cone_candidates(cone)
    if len(accepted) <= len(rejected):
        return {"_id": {"$in": list(accepted)}}
    return {"$and": [cone_candidates(cone), {"_id": {"$nin": list(rejected)}}]}


def cones_of(query: Query | None) -> list[Cone]:
    """Every cone in the query tree, each once, in order."""
    if isinstance(query, Cone):
        return [query]
    if isinstance(query, And | Or):
        return list(dict.fromkeys(cone for part in query.parts for cone in cones_of(part)))
    return []


def narrowing(query: Query | None, cone: Cone) -> Filter:
    """Conditions every match of `query` meets besides `cone` (the cone-free parts of a top-level And that
    holds it), so that the cone's candidates can be narrowed by them before the exact test."""
    if isinstance(query, And) and cone in query.parts:
        others = [compile_query(part) for part in query.parts if not cones_of(part)]
        if others:
            return {"$and": others}
    return {}


SORT_FIELD = "_sort"
MISSING_FIELD = "_nosort"


def compile_order(order: Order | None) -> tuple[list[Filter], dict[str, int]]:
    """Stages that compute the sort value (none for record fields) and the `$sort` document; ties broken by
    `_id` so pages are stable, and images without a value last in either direction."""
    if order is None:
        return [], {"created": -1, "_id": 1}
    direction = -1 if order.descending else 1
    if not order.keywords:
        return [], {STORED_FIELD[order.field]: direction, "_id": 1}
    value: Any
    if order.dates:
        matching = {"$filter": {"input": {"$ifNull": ["$dates", []]}, "as": "d",
                                "cond": {"$in": ["$$d.k", list(order.keywords)]}}}
        value = {"$min": {"$map": {"input": matching, "as": "d", "in": "$$d.mjd"}}}
    else:
        values: list[Any] = ["$" + header_path(keyword) for keyword in order.keywords]
        if order.numbers:  # numeric values only: text and booleans count as missing
            values = [{"$cond": [{"$isNumber": path}, path, None]} for path in values]
        value = values[0] if len(values) == 1 else {"$ifNull": [*values, None]}
    stages = [{"$addFields": {SORT_FIELD: value}},
              {"$addFields": {MISSING_FIELD: {"$cond": [
                  {"$in": [{"$type": "$" + SORT_FIELD}, ["missing", "null"]]}, 1, 0]}}}]
    return stages, {MISSING_FIELD: 1, SORT_FIELD: direction, "_id": 1}


# search elements and their indexes ------------------------------------------------------------------

def index_changes(elements: Sequence[SearchElement], present: Sequence[str]) -> tuple[list[str], list[str]]:
    """Given the index names present on `images`, the keywords whose index to create and to drop."""
    wanted = indexed_keywords(elements)
    have = {keyword for keyword in map(keyword_of_index, present) if keyword is not None}
    return sorted(wanted - have), sorted(have - wanted)


def distinct_pipeline(keyword: str, match: Filter, prefix: str, anywhere: bool = False) -> list[Filter]:
    """Counts of the text and number values of one keyword among the images matching `match`; with
    `prefix`, only values whose text (case-folded; a number's digits) starts with it (or holds it,
    `anywhere`), ignoring case."""
    path = header_path(keyword)
    conditions: list[Filter] = [{path: {"$type": ["string", "number"], **_NOT_ARRAY}}]
    if match:
        conditions.append(match)
    if prefix:
        start = ("" if anywhere else "^") + literal(prefix.casefold())
        as_text = {"$convert": {"input": "$" + path, "to": "string", "onError": "", "onNull": ""}}
        conditions.append({"$or": [
            {folded_path(keyword): {"$regex": start}},
            {"$and": [{path: {"$type": "number"}},
                      {"$expr": {"$regexMatch": {"input": as_text, "regex": start, "options": "i"}}}]}]})
    return [{"$match": conditions[0] if len(conditions) == 1 else {"$and": conditions}},
            {"$group": {"_id": "$" + path, "n": {"$sum": 1}}}]
