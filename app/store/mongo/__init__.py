"""The catalog on MongoDB, its parts (connection, migrations and the plain tables' primitives; the images)
put together here; the collections and their documents are described in `connection`. Everything else is
written once above the adapters (`app.store.tables`)."""

from __future__ import annotations

from app.store.mongo.catalog import MongoCatalog
from app.store.mongo.connection import MIGRATIONS, MIN_SERVER, redacted, server_version, username_key
from app.store.mongo.documents import image_doc, image_from_doc


class MongoStore(MongoCatalog):
    """`mongodb://[user:password@]host[:port]/dbname[?options]` (database `imagex` when none is named)."""


__all__ = [
    "MIGRATIONS",
    "MIN_SERVER",
    "MongoStore",
    "image_doc",
    "image_from_doc",
    "redacted",
    "server_version",
    "username_key",
]
