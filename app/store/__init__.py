"""Catalog adapters behind one interface; `open_store(url)` picks one by URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.exceptions import StoreError
from app.store.base import Store


def open_store(url: str, *, clock: Callable[[], float] | None = None) -> Store:
    """A store for `url` (not yet opened: await `store.open()`), stamping times from `clock` (the wall
    clock when None)."""
    store = _store_for(url)
    store.use_clock(clock)
    return store


def _store_for(url: str) -> Store:
    if url.startswith("sqlite:///"):
        from app.store.sqlite import SQLiteStore

        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        try:
            from app.store.mongo import MongoStore
        except ImportError as error:
            if error.name is None or error.name.split(".")[0] not in ("pymongo", "bson"):
                raise
            raise StoreError("the MongoDB store needs PyMongo: pip install 'imagex[mongodb]' "
                             "(or leave IMAGEX_STORE empty for the embedded SQLite catalog)") from None
        return MongoStore(url)
    raise StoreError(f"unknown store URL {url!r}: expected sqlite:///PATH or mongodb://HOST/DBNAME")


__all__ = ["Store", "open_store"]
