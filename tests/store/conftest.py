"""Stores for the contract suite and migrate-store tests: always SQLite; MongoDB when
IMAGEX_TEST_MONGODB_URL names a server (each test then gets a database of its own, dropped afterwards)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.store import open_store
from app.store.base import Store
from app.store.records import new_id
from tests.store.store_helpers import ADAPTERS, MONGODB_ENV, database_url, store_url


@pytest.fixture
def mongo_url() -> Iterator[str]:
    """The URL of a fresh MongoDB database for this test, dropped afterwards; skips without a server."""
    base = os.environ.get(MONGODB_ENV)
    if not base:
        pytest.skip(f"set {MONGODB_ENV}=mongodb://host:port to test on MongoDB")
    from pymongo import MongoClient

    name = "imagex_test_" + new_id().lower()
    yield database_url(base, name)
    with MongoClient(base) as client:
        client.drop_database(name)


@pytest.fixture(params=ADAPTERS)
def adapter_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty catalog, once per adapter."""
    return store_url(request.param, tmp_path, request)


@pytest.fixture
async def any_store(adapter_url: str) -> AsyncIterator[Store]:
    """An opened, empty catalog, once per adapter."""
    store = open_store(adapter_url)
    await store.open()
    yield store
    await store.close()
