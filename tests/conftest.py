"""Shared fixtures: settings in a temporary data folder, a started Archive, the app and its test client,
and FITS files written by astropy with real WCS. Helpers that tests call (ingest, log_in, ...) are in
tests/helpers.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app import create_app
from app.archive import Archive
from app.identity import hash_password
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.store.records import User, new_id
from app.store.sqlite import SQLiteStore
from app.tiles.pool import Pool
from tests.helpers import PASSWORD, QUICK_PASSWORDS

# The processes the tests start (imagex serve, ingest, worker) keep no HiPS survey, whose live updates would
# make every ingest of a celestial image slower, unless a test asks for one (tests/hips/, the sky page's
# browser test): set here, before any process is started, for those that inherit this environment.
os.environ.setdefault("IMAGEX_HIPS", "false")

# The test files that took longest (about 30 s to 2.5 min each on 2 cores), longest first. `make test` hands
# whole files to its processes in collection order: these go first, so that no long file starts last while
# the other process has nothing left to do. A file missing from the list just runs in its usual place.
LONGEST_FIRST = (
    "tests/hips/test_survey.py",
    "tests/browser/test_mosaic_browser.py",
    "tests/browser/test_readout_browser.py",
    "tests/test_cli.py",
    "tests/browser/test_embed_browser.py",
    "tests/ingest/test_watch.py",
    "tests/tiles/test_stream.py",
    "tests/browser/test_sky_browser.py",
    "tests/routes/test_api_fuzz.py",
    "tests/hips/test_audiences.py",
    "tests/test_cli_batch.py",
    "tests/test_worker.py",
    "tests/test_accounts.py",
    "tests/test_fleet.py",
    "tests/sky/test_coverage.py",
    "tests/test_cli_users.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    # a stable sort: the order within each file stays
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


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
    # hips=False: the HiPS survey's live updates are tested in tests/hips/, which turns them on
    return Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, job_lease=5.0, hips=False)


@pytest.fixture
async def archive(settings: Settings, pool: Pool) -> AsyncIterator[Archive]:
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    yield archive
    await archive.close()


@pytest.fixture
async def client(settings: Settings, pool: Pool) -> AsyncIterator[Any]:
    """The in-process test client of an app on the same data folder (no background job runner)."""
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        yield test_app.test_client()


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


@pytest.fixture
def account(archive: Archive) -> Callable[..., Awaitable[User]]:
    """`await account("alice", role="user")`: a real account with the password PASSWORD."""

    async def make(username: str, *, role: str = "user", **fields: Any) -> User:
        hashed = await hash_password(archive, PASSWORD)
        user = User(id=new_id(), username=username, role=role, password_hash=hashed, display_name=username,
                    **fields)
        await archive.store.add_user(user)
        return user

    return make


@pytest.fixture
def make_user(archive: Archive) -> Callable[..., Any]:
    """`await make_user("alice", role="user")`: a real account with the password PASSWORD."""
    from app.identity import new_user

    async def make(username: str, *, role: str = "user", password: str = PASSWORD, **fields: Any) -> Any:
        return await new_user(archive, username, password, role=role, **fields)

    return make
