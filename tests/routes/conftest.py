"""Fixtures for route tests: images ingested through the real job queue, and small page readers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.archive import Archive
from app.store.records import ImageRecord
from tests.helpers import csrf_of, ingest, log_in
from tests.routes.actor_helpers import ROLES, Actor
from tests.routes.pages import Ingested
from tests.routes.permission_cases import MATRIX_TABLE
from tests.routes.upload_helpers import token_for


@pytest.fixture
def add_image(archive: Archive, write_fits: Callable[..., Any]) -> Ingested:
    """Write a FITS file and ingest it, public unless told: `await add_image("a.fits", size=300,
    EXPTIME=10.0)`, `await add_image("b.fits", owner="alice", visibility="private")`."""

    async def add(name: str, *, owner: str = "", visibility: str = "public", **options: Any) -> ImageRecord:
        path = write_fits(name, **options)
        [job] = await ingest(archive, path, owner=owner, visibility=visibility)
        assert job.state == "done", job.error
        [image_id] = job.image_ids
        image = await archive.store.get_image(image_id)
        assert image is not None
        return image

    return add


@pytest.fixture
async def image(add_image: Ingested) -> ImageRecord:
    """One ready 300x300 image: its pyramid has two levels with more than one tile."""
    return await add_image("field.fits", size=300, EXPTIME=42.0, DATE_OBS="2026-03-14T21:05:00")


@pytest.fixture
async def admin(client: Any, make_user: Callable[..., Any]) -> Any:
    """The test client, logged in as an administrator (who sees every image and job)."""
    await make_user("root", role="admin")
    assert (await log_in(client, "root")).status_code == 302
    return client


@pytest.fixture
async def member(client: Any, make_user: Callable[..., Any]) -> Any:
    """The test client, logged in as a registered user (who may download what they may see)."""
    await make_user("mia")
    assert (await log_in(client, "mia")).status_code == 302
    return client


@pytest.fixture
async def alice(archive: Archive, make_user: Callable[..., Any]) -> Any:
    """A registered user, `alice`."""
    return await make_user("alice")


@pytest.fixture
async def alice_token(archive: Archive, alice: Any) -> dict[str, str]:
    """Headers carrying an API token of `alice`."""
    return await token_for(archive, alice)


@pytest.fixture
def actors(client: Any, make_user: Callable[..., Any]) -> Callable[[str], Any]:
    """`await actors("otto")`: olive (who owns the test images), otto (another user), ada (an admin) or a
    guest, each with a test client of the same app; made when first asked for (logins cost time)."""
    made: dict[str, Actor] = {}

    async def actor(name: str) -> Actor:
        if name not in made:
            browser = client if name == "olive" else client.app.test_client()
            if ROLES[name]:
                await make_user(name, role=ROLES[name])
                assert (await log_in(browser, name)).status_code == 302
            made[name] = Actor(browser, await csrf_of(browser))
        return made[name]

    return actor


@pytest.fixture
async def mine(add_image: Ingested) -> ImageRecord:
    """A private image of olive's, from a batch folder."""
    return await add_image("mine.fits", owner="olive", visibility="private", OBJECT="Olive's field")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest 9, schemathesis' generated tests (test_api_fuzz.py, one per API operation) all get the
    node id of their function, without the operation in it; pytest-xdist tells tests apart by node id and
    would run the first operation in place of every other. Each gets back the id its name spells."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if type(item).__name__ == "SchemathesisFunction" and label and "[" not in item.nodeid:
            assert isinstance(item, pytest.Function) and item.parent is not None
            item._id = item.parent.id.child(item.originalname).with_params(label)  # as pytest 9 spells ids


MATRIX_TABLES: list[list[str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keeps the permission matrix's table from its test's report; under pytest-xdist the report comes
    from the worker that ran it."""
    if report.when == "call":
        MATRIX_TABLES.extend(value for name, value in report.user_properties if name == MATRIX_TABLE)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The permission matrix's table (tests/routes/test_permission_matrix.py), when it ran."""
    for table in MATRIX_TABLES:
        terminalreporter.section("permission matrix")
        for line in table:
            terminalreporter.write_line(line)
