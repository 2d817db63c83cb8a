"""The embedded catalog: one SQLite file, its parts by noun (connection and migrations, catalog, job queue,
accounts, site state), put together here."""

from __future__ import annotations

from app.store.sqlite.accounts import SQLiteAccounts
from app.store.sqlite.catalog import SQLiteCatalog
from app.store.sqlite.connection import MIGRATIONS, disk_full
from app.store.sqlite.jobs import SQLiteJobs
from app.store.sqlite.site import SQLiteSite


class SQLiteStore(SQLiteCatalog, SQLiteJobs, SQLiteAccounts, SQLiteSite):
    """`sqlite:///path/to/catalog.sqlite`."""


__all__ = ["MIGRATIONS", "SQLiteStore", "disk_full"]
