"""The adapters the contract suite runs on, and catalog URLs for them."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

MONGODB_ENV = "IMAGEX_TEST_MONGODB_URL"
ADAPTERS = ["sqlite", pytest.param("mongodb", marks=pytest.mark.skipif(
    not os.environ.get(MONGODB_ENV), reason=f"set {MONGODB_ENV}=mongodb://host:port to test on MongoDB"))]


def database_url(base: str, name: str) -> str:
    """`base` with its database replaced by `name` (the options kept)."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def store_url(adapter: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "catalog") -> str:
    if adapter == "sqlite":
        return f"sqlite:///{tmp_path / (name + '.sqlite')}"
    return str(request.getfixturevalue("mongo_url"))
