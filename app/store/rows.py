"""Records to table rows and documents and back, derived from the records' dataclass fields, so that a
field added to a record is stored by every adapter without being typed out again.

A field whose type is a dict or a list (optionally `| None`) is structured: a JSON text in a SQLite column,
a sub-document or array in MongoDB. A `bool` field is an integer 0/1 in SQLite. Everything else is stored
as it is.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

R = TypeVar("R")


def dumps(value: Any) -> str:
    """JSON as the catalogs store it: compact, non-ASCII kept, no NaN (JSON has none)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


_COLUMNS: dict[type, tuple[tuple[str, str], ...]] = {}


def columns(cls: type) -> tuple[tuple[str, str], ...]:
    """(name, kind) of each field of the record class `cls`; kind is "json", "bool" or "plain"."""
    known = _COLUMNS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = tuple((item.name, _kind(hints[item.name])) for item in dataclasses.fields(cls))
        _COLUMNS[cls] = known
    return known


def _kind(hint: Any) -> str:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    concrete = [option for option in options if option is not type(None)]
    if len(concrete) == 1 and typing.get_origin(concrete[0]) in (dict, list, tuple):
        return "json"
    return "bool" if hint is bool else "plain"


def names(cls: type, *, skip: Iterable[str] = ()) -> list[str]:
    left_out = set(skip)
    return [name for name, _ in columns(cls) if name not in left_out]


def to_row(record: Any, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The record as SQL parameters by field name: structured fields as JSON text, booleans as 0/1."""
    left_out = set(skip)
    return column_values(type(record), {name: getattr(record, name) for name in names(type(record))
                                        if name not in left_out})


def column_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Values of fields of the record class `cls` as SQL parameters (structured as JSON text, booleans as
    0/1)."""
    kinds = dict(columns(cls))
    row: dict[str, Any] = {}
    for name, value in values.items():
        kind = kinds[name]
        if kind == "json":
            row[name] = None if value is None else dumps(list(value) if isinstance(value, tuple) else value)
        elif kind == "bool":
            row[name] = int(value)
        else:
            row[name] = value
    return row


def from_row(cls: type[R], row: Mapping[str, Any] | sqlite3.Row) -> R:
    """The record of class `cls` from a row (sqlite3.Row or a mapping) holding a column per field."""
    values: dict[str, Any] = {}
    for name, kind in columns(cls):
        value = row[name]
        if kind == "json":
            values[name] = None if value is None else json.loads(value)
        elif kind == "bool":
            values[name] = bool(value)
        else:
            values[name] = value
    return cls(**values)


def to_doc(record: Any, *, key: str | None = "id") -> dict[str, Any]:
    """The record as a MongoDB document: its `key` field as `_id` (none: MongoDB gives it one), the others as
    they are."""
    doc = {name: getattr(record, name) for name, _ in columns(type(record)) if name != key}
    return doc if key is None else {"_id": getattr(record, key), **doc}


def from_doc(cls: type[R], doc: Mapping[str, Any], *, key: str | None = "id") -> R:
    """The record of class `cls` from a document made by `to_doc` (fields it lacks take their defaults)."""
    values = {name: doc[name] for name, _ in columns(cls) if name != key and name in doc}
    if key is not None:
        values[key] = doc["_id"]
    return cls(**values)


def insert_sql(table: str, fields: Iterable[str], *, verb: str = "INSERT") -> str:
    """`INSERT INTO table (a, b) VALUES (:a, :b)` for rows given by name."""
    listed = list(fields)
    return (f"{verb} INTO {table} ({', '.join(listed)}) "
            f"VALUES ({', '.join(':' + name for name in listed)})")
