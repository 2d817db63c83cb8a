"""The embedded catalog: one SQLite file, its parts (connection, migrations and the plain tables' primitives;
the images) put together here. Everything else is written once above the adapters (`app.store.tables`)."""

from __future__ import annotations

from app.store.sqlite.catalog import SQLiteCatalog
from app.store.sqlite.connection import MIGRATIONS, disk_full


class SQLiteStore(SQLiteCatalog):
    """`sqlite:///path/to/catalog.sqlite`."""


__all__ = ["MIGRATIONS", "SQLiteStore", "disk_full"]
