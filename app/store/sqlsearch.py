"""The neutral query form in SQLite: conditions over `images.header` (JSON), orderings, and the expression
indexes that follow the search builder's elements.

Header values are read with `json_extract(header, '$."KEY"')` written out literally (keywords are checked
by `check_keyword`, which allows no quotes), because SQLite uses an expression index only for the very
expression it indexes; a bound parameter for the path would never match one.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from app.store.footprint import cone_ranges
from app.store.query import (
    And,
    Compare,
    Cone,
    DateRange,
    FieldIn,
    Or,
    Order,
    Query,
    Scalar,
    TextMatch,
    check_keyword,
)
from app.store.records import SearchElement, index_name, indexed_keywords, keyword_of_index

_OPS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_BROAD_FIELDS = ("owner", "visibility")


def value_of(keyword: str) -> str:
    """The SQL expression for one header keyword's value as search compares and sorts it, and the one its
    index is built on: a number or text; NULL when the keyword is absent or holds anything else (true,
    false, a list). With the JSON type inside the indexed expression, a range or an equality is answered
    from the index alone; a separate json_type() test would read and parse every candidate's header."""
    path = f"""'$."{check_keyword(keyword)}"'"""
    return (f"CASE WHEN json_type(header, {path}) IN ('integer', 'real', 'text') "
            f"THEN json_extract(header, {path}) END")


def raw_value_of(keyword: str) -> str:
    """The keyword's JSON value as SQLite reads it (true and false as 1 and 0)."""
    return f"""json_extract(header, '$."{check_keyword(keyword)}"')"""


def type_of(keyword: str) -> str:
    return f"""json_type(header, '$."{check_keyword(keyword)}"')"""


def fold(value: Any) -> str | None:
    """Case folding for text search beyond ASCII (SQLite's own lower() folds ASCII only)."""
    return None if value is None else str(value).casefold()


def compile_query(query: Query | None) -> tuple[str, list[Any]]:
    """Translate the neutral query form into a SQL condition over `images` and its parameters (None: every
    image)."""
    if query is None:
        return "1", []
    if isinstance(query, Compare):
        return _compile_compare(query)
    if isinstance(query, TextMatch):
        return _compile_text(query)
    if isinstance(query, DateRange):
        return _compile_date_range(query)
    if isinstance(query, Cone):
        return _compile_cone(query)
    if isinstance(query, FieldIn):
        if not query.values:
            return ("1" if query.negate else "0"), []
        operator = "NOT IN" if query.negate else "IN"
        sql = f"{query.field} {operator} ({', '.join('?' * len(query.values))})"
        if query.field in _BROAD_FIELDS:
            # permissions split the catalog into a few large parts, but sampled statistics (ANALYZE with
            # analysis_limit) take every owner and visibility for a thousand images or so, and the planner
            # then drives a search by them instead of by the search's own index (seconds, not ms, at 1M)
            sql = f"likely({sql})"
        return sql, list(query.values)
    if isinstance(query, And | Or):
        if not query.parts:
            return ("1" if isinstance(query, And) else "0"), []
        joiner = " AND " if isinstance(query, And) else " OR "
        # keywords with a numeric upper bound here: their lower bounds need not shut out text
        capped = {part.keyword for part in query.parts if isinstance(query, And) and isinstance(part, Compare)
                  and _is_number(part.value) and part.op in ("lt", "le", "eq")}
        # a small cone's cells hold a handful of images: listed first, it drives the query (SQLite takes
        # the first of several `id IN (...)` conditions it cannot tell apart)
        parts = sorted(query.parts, key=lambda part: not (isinstance(part, Cone) and part.radius_deg <= 1))
        sqls, params = [], []
        for part in parts:
            sql, part_params = (_compile_compare(part, capped=part.keyword in capped)
                                if isinstance(part, Compare) else compile_query(part))
            sqls.append(f"({sql})")
            params.extend(part_params)
        return joiner.join(sqls), params
    raise TypeError(f"not a query node: {query!r}")


def _is_number(value: Scalar) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compile_compare(query: Compare, *, capped: bool = False) -> tuple[str, list[Any]]:
    """`EXPTIME > 5` never matches EXPTIME = 'fast' or EXPTIME = T: values compare only with values of
    their own kind. SQLite orders every number below every text (and '' is the least text), so a number
    bound is kept below '' and a text bound at or above it, unless the comparison does so already (or,
    `capped`, a numeric upper bound beside it does: one range on the index then answers both)."""
    keyword, value, op = query.keyword, query.value, query.op
    if isinstance(value, bool):
        # JSON true/false come back from json_extract as 1/0; they have no index (nor a place in ranges)
        return (f"{type_of(keyword)} IN ('true', 'false') AND {raw_value_of(keyword)} {_OPS[op]} ?",
                [int(value)])
    sql = f"{value_of(keyword)} {_OPS[op]} ?"
    if isinstance(value, str) and op in ("lt", "le", "ne"):
        sql += f" AND {value_of(keyword)} >= ''"
    elif not isinstance(value, str) and op in ("gt", "ge", "ne") and not capped:
        sql += f" AND {value_of(keyword)} < ''"
    return sql, [value]


def _compile_text(query: TextMatch) -> tuple[str, list[Any]]:
    """Case-insensitive and literal: no LIKE pattern is built, so `%` and `_` are plain characters."""
    # Python's casefold on both sides: SQLite's lower() leaves non-ASCII letters alone, so "STRASSE" would
    # miss "Straße"
    folded, needle = f"imagex_fold({raw_value_of(query.keyword)})", query.text.casefold()
    test = (f"instr({folded}, ?) > 0" if query.mode == "contains"
            else f"substr({folded}, 1, {len(needle)}) = ?")
    return f"{type_of(query.keyword)} = 'text' AND {test}", [needle]


def _compile_date_range(query: DateRange) -> tuple[str, list[Any]]:
    """Images with a normalised date of any of the keywords in range: one range scan of the
    (keyword, mjd) index per keyword."""
    low, high = query.bounds()
    conditions = [f"keyword IN ({', '.join('?' * len(query.keywords))})"]
    params: list[Any] = list(query.keywords)
    if low is not None:
        conditions.append("mjd >= ?")
        params.append(low)
    if high is not None:
        conditions.append("mjd <= ?")
        params.append(high)
    return f"id IN (SELECT image_id FROM image_dates WHERE {' AND '.join(conditions)})", params


def _compile_cone(query: Cone) -> tuple[str, list[Any]]:
    """Candidates from the HEALPix cells of the cone (runs of the cell index), then the exact footprint test
    (the `sky_cone` function) on those alone."""
    ranges = cone_ranges(query.ra, query.dec, query.radius_deg, query.mode)
    cells = " OR ".join("cell BETWEEN ? AND ?" for _ in ranges)
    params: list[Any] = [bound for run in ranges for bound in run]
    return (f"id IN (SELECT image_id FROM image_cells WHERE {cells}) AND sky_cone(sky, ?, ?, ?, ?)",
            [*params, query.ra, query.dec, query.radius_deg, query.mode])


def compile_order(order: Order | None) -> tuple[str, list[Any]]:
    """An ORDER BY clause (without the words) and its parameters; ties broken by id so pages are stable."""
    if order is None:
        return "created DESC, id", []
    direction = "DESC" if order.descending else "ASC"
    params: list[Any] = []
    if order.keywords and order.dates:
        marks = ", ".join("?" * len(order.keywords))
        expression = (f"(SELECT min(mjd) FROM image_dates d WHERE d.image_id = images.id "
                      f"AND d.keyword IN ({marks}))")
        params = list(order.keywords)
    elif order.keywords:
        values = [value_of(keyword) if not order.numbers else
                  f"CASE WHEN {type_of(keyword)} IN ('integer', 'real') THEN {value_of(keyword)} END"
                  for keyword in order.keywords]
        expression = values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"
    else:
        expression = order.field
    return f"{expression} {direction} NULLS LAST, id", params


# search elements and their indexes ------------------------------------------------------------------

def index_sql(keyword: str) -> str:
    # visibility and owner ride along so a user's search is counted from the index alone (a broad
    # number range matched a tenth of a million images in bench/search.py)
    return f'CREATE INDEX "{index_name(keyword)}" ON images ({value_of(keyword)}, visibility, owner)'


def existing_indexes(db: sqlite3.Connection, *, current: bool = False) -> dict[str, str]:
    """Keyword -> index name, for the keyword indexes present (`current`: only those built on today's
    expression; an index on another one is never used by the queries)."""
    found: dict[str, str] = {}
    for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                "AND tbl_name = 'images'"):
        keyword = keyword_of_index(name)
        if keyword is not None and (not current or sql == index_sql(keyword)):
            found[keyword] = name
    return found


def sync_indexes(db: sqlite3.Connection, elements: Iterable[SearchElement]) -> tuple[list[str], list[str]]:
    """Create the indexes the elements' keywords need and drop those no element needs (inside the caller's
    transaction). Returns the keywords indexed and dropped."""
    wanted = indexed_keywords(elements)
    present = existing_indexes(db)
    current = existing_indexes(db, current=True)
    for keyword in present.keys() - current.keys():  # built on an older expression: built again
        db.execute(f'DROP INDEX "{present[keyword]}"')
    created = sorted(wanted - current.keys())
    dropped = sorted(current.keys() - wanted)
    for keyword in created:
        db.execute(index_sql(keyword))
    for keyword in dropped:
        db.execute(f'DROP INDEX "{current[keyword]}"')
    return created, dropped


def count_keywords(headers: Iterable[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for header in headers:
        counts.update(header.keys())
    return counts


def add_keyword_counts(db: sqlite3.Connection, counts: Counter[str]) -> None:
    db.executemany("INSERT INTO header_keywords (keyword, images) VALUES (?, ?) "
                   "ON CONFLICT (keyword) DO UPDATE SET images = images + excluded.images",
                   list(counts.items()))


def remove_keyword_counts(db: sqlite3.Connection, image_ids: Sequence[str]) -> None:
    """Before the images are deleted: take their keywords off the counts."""
    db.executemany("UPDATE header_keywords SET images = images - 1 WHERE keyword IN "
                   "(SELECT key FROM json_each((SELECT header FROM images WHERE id = ?)))",
                   [(image_id,) for image_id in image_ids])
    db.execute("DELETE FROM header_keywords WHERE images <= 0")


def distinct_values(db: sqlite3.Connection, keywords: Sequence[str], where: str, params: list[Any],
                    prefix: str, limit: int, *, anywhere: bool = False) -> list[tuple[Scalar, int]]:
    """Values of any of the keywords among the rows matching `where` (starting with `prefix`, or holding
    it anywhere), most frequent first."""
    counts: Counter[Scalar] = Counter()
    for keyword in dict.fromkeys(keywords):
        value = value_of(keyword)
        conditions = [f"{type_of(keyword)} IN ('text', 'integer', 'real')", f"({where})"]
        extra: list[Any] = []
        if prefix and anywhere:
            conditions.append(f"instr(imagex_fold({value}), ?) > 0")
            extra.append(prefix.casefold())
        elif prefix:
            conditions.append(f"substr(imagex_fold({value}), 1, {len(prefix.casefold())}) = ?")
            extra.append(prefix.casefold())
        sql = (f"SELECT {value} AS value, count(*) AS n FROM images WHERE {' AND '.join(conditions)} "
               f"GROUP BY value")
        for row in db.execute(sql, [*params, *extra]):
            counts[row[0]] += row[1]
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return ranked[:limit]
