"""The catalog on MongoDB, `MongoStore` (`connection`: the client, the migrations and the plain tables'
primitives, and the collections and their documents described; `documents` and `catalog`: the images).
Everything else is written once above the adapters (`app.store.tables`)."""

from app.store.mongo.catalog import MongoStore

__all__ = ["MongoStore"]
