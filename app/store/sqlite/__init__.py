"""The embedded catalog, `SQLiteStore`: one SQLite file (`connection`: the file, its migrations and the plain
tables' primitives; `catalog`: the images). Everything else is written once above the adapters."""

from app.store.sqlite.catalog import SQLiteStore

__all__ = ["SQLiteStore"]
