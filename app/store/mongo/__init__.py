"""The catalog on MongoDB, its parts (connection, migrations and the plain tables' primitives; the images)
put together here; the collections and their documents are described in `connection`. Everything else is
written once above the adapters (`app.store.tables`)."""

from app.store.mongo.catalog import MongoStore

__all__ = ["MongoStore"]
