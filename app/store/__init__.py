"""Catalog adapters behind one interface; `open_store(url)` picks one by URL."""

from __future__ import annotations

from pathlib import Path

from app.exceptions import StoreError
from app.store.base import Store


def open_store(url: str) -> Store:
    """A store for `url` (not yet opened: await `store.open()`)."""
    if url.startswith("sqlite:///"):
        from app.store.sqlite import SQLiteStore

        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        raise StoreError("the MongoDB store is not available yet: use the embedded SQLite store "
                         "(leave IMAGEX_STORE empty)")
    raise StoreError(f"unknown store URL {url!r}: expected sqlite:///PATH")


__all__ = ["Store", "open_store"]
