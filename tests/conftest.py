"""Shared fixtures: settings in a temporary data folder, a started Archive, the app and its test client,
FITS files written by astropy with real WCS, and a helper that runs the real job queue to completion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app import create_app
from app.archive import Archive
from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for, walk
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.store.base import JobRecord
from app.store.sqlite import SQLiteStore
from app.tiles.pool import Pool


@pytest.fixture(scope="session")
def pool() -> Iterator[Pool]:
    """One real process pool for the whole run (spawning workers that import astropy takes seconds)."""
    shared = Pool(2)
    yield shared
    shared.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A bare, opened SQLite catalog in the test's folder."""
    opened = SQLiteStore(tmp_path / "catalog.sqlite")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, job_lease=5.0)


@pytest.fixture
async def archive(settings: Settings, pool: Pool) -> AsyncIterator[Archive]:
    archive = Archive(settings, pool=pool)
    await archive.startup()
    yield archive
    await archive.close()


@pytest.fixture
async def client(settings: Settings, pool: Pool) -> AsyncIterator[Any]:
    """The in-process test client of an app on the same data folder (no background job runner)."""
    app = create_app(settings, run_jobs=False)
    app.extensions["imagex"].pool = pool
    app.extensions["imagex"]._own_pool = False
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def ingest(archive: Archive, *paths: Path, owner: str = "", scaling: dict[str, Any] | None = None,
                 visibility: str = "private", timeout: float = 120.0) -> list[JobRecord]:
    """Queue `paths` (files or folders) and run the real job queue until every job is done or failed."""
    jobs = [job_for(path, owner=owner) for path in walk(paths)]
    for job in jobs:
        job.options["visibility"] = visibility
        if scaling:
            job.options["scaling"] = scaling
    queued = await archive.store.enqueue(jobs)
    runner = JobRunner(archive, concurrency=2, role="test")

    async def drain() -> None:
        while await runner.run_one():
            pass

    await asyncio.wait_for(asyncio.gather(drain(), drain()), timeout)
    return await archive.store.get_jobs([job.id for job in queued])


@pytest.fixture
def write_fits(tmp_path: Path) -> Callable[..., Path]:
    """Write a FITS star field with a real TAN WCS: `write_fits("name.fits", size=64, **header_cards)`."""

    def write(name: str, *, size: int = 64, data: np.ndarray | None = None, rotation: float = 0.0,
              dtype: str = "float32", **cards: Any) -> Path:
        wcs = celestial_wcs(FIELD_RA, FIELD_DEC, size, size, rotation_deg=rotation)
        pixels = star_field(wcs, size, size) if data is None else data
        header = wcs.to_header()
        header["OBJECT"] = "Test field"
        for keyword, value in cards.items():
            header[keyword.replace("_", "-")] = value
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(pixels.astype(dtype), header).writeto(path, overwrite=True)
        return path

    return write


PASSWORD = "correct horse battery"


@pytest.fixture
def make_user(archive: Archive) -> Callable[..., Any]:
    """`await make_user("alice", role="user")`: a real account with the password PASSWORD."""
    from app.accounts import new_user

    async def make(username: str, *, role: str = "user", password: str = PASSWORD, **fields: Any) -> Any:
        return await new_user(archive, username, password, role=role, **fields)

    return make


def csrf_from(html: str) -> str:
    """The CSRF token of the first form (or the page's htmx headers) in `html`."""
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'"X-CSRF-Token": "([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def log_in(client: Any, username: str, password: str = PASSWORD) -> Any:
    """Log in through the real login form (GET for the CSRF token, then POST); returns the response."""
    page = await client.get("/login")
    token = csrf_from(await page.get_data(as_text=True))
    return await client.post("/login", form={"username": username, "password": password,
                                             "csrf_token": token})


async def csrf_of(client: Any, path: str = "/") -> str:
    """The CSRF token the client's browser would hold after loading `path`."""
    page = await client.get(path)
    return csrf_from(await page.get_data(as_text=True))
