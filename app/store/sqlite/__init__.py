"""The embedded catalog: one SQLite file, its parts (connection, migrations and the plain tables' primitives;
the images) put together here. Everything else is written once above the adapters (`app.store.tables`)."""

from app.store.sqlite.catalog import SQLiteStore

__all__ = ["SQLiteStore"]
